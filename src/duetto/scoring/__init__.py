"""Scorers return numbers (router scores, verifier confidences, PII counts);
policies compare them with thresholds."""
