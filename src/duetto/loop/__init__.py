"""The gateway's live loop (issue 14): shadow answers, labels from four sources, continuous
audit and the controller it feeds. State lives in the trace store's database (`LoopStore`), so
it survives restarts and replicas on one PostgreSQL share it. Nothing here runs on a user's
request path: the gateway enqueues, a bounded worker answers and labels in the background."""
