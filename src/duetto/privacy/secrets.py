"""Secrets and credentials in free text: what must never leave the device (risk tier "secret").

`find_secrets(text) -> list[Entity]` returns non-overlapping spans over the secret VALUE (not the
key name: in `password = "hunter2!"` only `hunter2!` is redacted, so the request still says a
password was there). Types (`SECRET_TYPES`, all of tier `TIER` = "secret"):

- PASSWORD: the value after a password/secret/token/key word in prose (`my password is X`,
  `PW:X`, `secret X1y2`), config (ini/yaml/json/env/xml/toml), code (`pwd = "X"`, `.assign("X")`,
  `== "X"`), SQL (`IDENTIFIED BY 'X'`) and CLI flags (`-p X`, `--password=X`, `-pX`, `-u u:p`);
- API_KEY: provider key formats with a known prefix (ghp_, github_pat_, glpat-, xox?-, sk-,
  sk_live_, AKIA/ASIA, AIza, hf_, npm_, pypi-, SG., ...) and detect-secrets' provider plugins;
- PRIVATE_KEY: PEM / OpenSSH / PGP private key blocks, BEGIN to END (to the last base64 line
  when END is cut off);
- JWT: `eyJ...` header.payload[.signature];
- CONNECTION_STRING: the `user:password` of a URL (`postgres://u:p@host`), i.e. DSN credentials;
- SECRET: a high-entropy token (letters and digits, Shannon entropy above a bound); shorter and
  lower-entropy tokens only when a key word is earlier on the same line. Recall first.

Decided non-secrets: a UUID or hex string named as such on its line (commit, sha, hash, md5,
checksum, digest, uuid, request/trace/user id, ...) unless a key word is there too; file paths,
dotted names and snake/kebab identifiers made of words; ordinary words. Elsewhere a hex string
or UUID of 16+ characters is redacted (recall first: API keys are often hex or UUIDs).

When detect-secrets (Yelp, Apache-2.0; the `privacy` extra) is installed, its provider and
entropy plugins also run (`secrets_plugins`). Without it the rules here still run, and recall on
provider keys without a known prefix or key word may drop (on the three secret sets it did not:
any-type recall was the same to 0.001; see docs). Spans from all rules are merged where they
overlap (the more specific type wins).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator

from duetto.privacy.secrets_plugins import detect_secrets_available, detect_secrets_hits
from duetto.scoring.pii import Entity

__all__ = ["SECRET_TYPES", "TIER", "detect_secrets_available", "find_secrets", "shannon_entropy"]

TIER = "secret"
SECRET_TYPES = frozenset(
    {"PASSWORD", "API_KEY", "PRIVATE_KEY", "JWT", "CONNECTION_STRING", "SECRET"}
)
_PRIORITY = {"PRIVATE_KEY": 0, "JWT": 1, "CONNECTION_STRING": 2, "API_KEY": 3, "PASSWORD": 4}

# --- shapes ------------------------------------------------------------------------------------

_PEM_BEGIN = re.compile(
    r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d+:|"
    r"-----BEGIN PGP PRIVATE KEY BLOCK-----"
)
_PEM_END = re.compile(r"-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|Private-MAC: *\w+")
_B64_LINE = re.compile(r"[^\n]*[A-Za-z0-9+/=]{16,}[^\n]*")
_JWT = re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]+)?")
# user:password@ of a URL; the password may hold "@" (the last "@" before the host ends it).
_URL_CRED = re.compile(r"\b[a-zA-Z][\w+.-]{0,30}://([^\s:/@'\"<>]{0,128}:[^\s/'\"<>]{1,256})@")
_PREFIXED = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"(?:gh[pousr]|github_pat|glpat|glptt|gldt|glrt|hf|npm|dop_v1|doo_v1|dckr_pat|lin_api"
    r"|shp(?:at|ca|pa|ss)|[a-z]{2,4}_(?:live|test|prod)|xapp|xox[a-z]|sk|pypi"
    r"|AGE-SECRET-KEY|SG|key|ATATT|ATCTT|ops|hvs|hvb|sq0[a-z]{3}|figd|glc|nrak|NRAK|dapi"
    r"|EAA[A-Za-z]{2,}|ya29)[_.-]"
    r"|AKIA|ASIA|AGPA|AIDA|AROA|AIza|A3T[A-Z0-9]"
    r")[A-Za-z0-9_\-./+=]{15,}"
)
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_\-.~%])[A-Za-z0-9+/_\-.~%]{8,}={0,3}")
_UUID_LIKE = re.compile(
    r"[0-9A-Za-z]{8}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{12}"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CAMEL = re.compile(r"[A-Z]?[a-z]{3,}")
_CASE_RUN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_SWITCH = re.compile(r"(?<=[A-Za-z])\d|(?<=\d)[A-Za-z]")
# A credential after an HTTP auth scheme: `Authorization: Bearer <token>`.
_AUTH_SCHEME = re.compile(
    r"\b(?:Bearer|Basic|Digest|NTLM|Negotiate|Token)[ \t]+([A-Za-z0-9+/_\-.~=]{8,})"
)
_IBAN = re.compile(r"[A-Za-z]{2}\d{2}[A-Za-z0-9]{11,30}")
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_WORDY = re.compile(r"[a-z]{4,}|[A-Z][a-z]{3,}")

# --- key words and assignments ------------------------------------------------------------------

# A key word: found cheaply, then widened to the identifier around it (DB_PASSWORD, apiKey).
_KEY_CORE = re.compile(
    r"(?i)pa?ss?wo?r?d|passphrase|passcode|secret|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|credentials?|authori[sz]ation|contrase[ñn]a|passwort|kennwort|senha"
    r"|пароль|비밀번호|패스워드|암호|パスワード|密码|密碼|口令|pwd|pw|pass|pin|mdp|auth|key"
)
_SHORT_KEYS = frozenset({"pwd", "pw", "pass", "pin", "mdp", "auth", "key"})
_IDENT = re.compile(r"[\w.-]*")
_QUOTED = r"(?:\"(?P<dq>[^\"\n]{1,300})\"|'(?P<sq>[^'\n]{1,300})'|`(?P<bq>[^`\n]{1,300})`)"
# A bare value ends at a space, quote, bracket, "," or ";", and at "&" only before `name=`.
_BARE = r"(?P<bare>(?:[^\s\"'`<>,;&|(){}\[\]]|&(?![\w.-]+=)){1,300})"
# Tails tried right after the key word's identifier, strongest first. Strong: a real
# assignment (=, :=, =>, ==, (, .assign(, a quoted value after ":", an XML element or attribute).
_TAILS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (
        re.compile(
            rf"[\"'\]]{{0,2}}[ \t]*(?:\[\d*\])?[ \t]*(?:=>|:=|::|==|!=|=|\(|\.assign\()[ \t]*@?"
            rf"(?:{_QUOTED}|{_BARE})"
        ),
        True,
    ),
    (re.compile(rf"[\"'\]]{{0,2}}[ \t]*[:：,][ \t]*{_QUOTED}"), True),
    (re.compile(r"(?:\s[^>\n]*)?>\s*(?P<bare>[^<\s][^<\n]{0,300}?)\s*</"), True),
    (re.compile(rf"[\"'][ \t]+(?:value|password)[ \t]*=[ \t]*{_QUOTED}"), True),
    (re.compile(rf"[\"'\]]{{0,2}}[ \t]*[:：][ \t]*{_BARE}"), False),
    # Weak: prose ("is", "was", "set to", a dash) or only spaces before the value; one line.
    (
        re.compile(
            r"(?i)(?:[ \t]+(?:for|of|to|on)[ \t]+[^\s:]{1,40}){0,2}[\"'\]]{0,2}"
            r"(?:[ \t]+(?:is|was|are|is[ \t]+set[ \t]+to|was[ \t]+set[ \t]+to|set[ \t]+to|to"
            rf"|now|es|est|ist|é|-|–|=)[ \t]+|[ \t]+)(?:{_QUOTED}|{_BARE})"
        ),
        False,
    ),
)
_CLI = re.compile(
    rf"(?<!\S)(?:--?(?:[\w-]*(?:pass(?:word|wd|phrase)?|secret|token|api-?key|bearer)"
    rf"[\w-]*|p|P|k)(?:=|\s+)|-p(?=[^\s.-]))(?:{_QUOTED}|{_BARE})"
)
_CLI_USER = re.compile(r"(?<!\S)(?:-u|--user)(?:=|\s+)[\"']?(?P<bare>[^\s:\"']+:[^\s\"']+)")
_SQL_BY = re.compile(rf"(?i)\bIDENTIFIED(?:\s+WITH\s+\w+)?\s+BY\s+(?:{_QUOTED}|{_BARE})")
_SQL_PASSWORD = re.compile(rf"(?i)\bPASSWORD(?:[ \t]*=[ \t]*|[ \t]+){_QUOTED}")
# String arguments of a call named for credentials: NetworkCredential("user", "pass").
_CRED_CALL = re.compile(r"(?i)\b\w*(?:credential|password|passwd|secret|login|auth)\w*\s*\(")
_STRING_ARG = re.compile(_QUOTED)
_CONTEXT = re.compile(
    r"(?i)pass|pwd|\bpw|secret|token|key|cred|auth|bearer|\bsig\b|signature|session|cookie"
    r"|hook|login|access|private|contrase|비밀번호|패스워드|암호|パスワード|密码|密碼"
)
# Words naming a hex string or UUID as a non-secret (without a key word on the line too).
_WEAK_CONTEXT = re.compile(
    r"(?i)commit|\bsha|hash|md5|checksum|digest|revision|\brev\b|etag|integrity|uuid|guid"
    r"|\b(?:request|trace|correlation|object|record|user|order|session)[_ -]?id\b"
)
_PASSWORD_WORD = re.compile(
    r"(?i)pa?ss?wo?r?d|pass|pwd|pw|mdp|secret|contrase|passwort|kennwort|senha|пароль|비밀번호"
    r"|패스워드|암호|パスワード|密码|密碼|口令"
)
_CODE_WORDS = frozenset(
    ["self", "this", "cls", "lambda", "new", "await", "function", "def", "return", "not"]
)
_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:[_.][a-z0-9]+)+")
_DOTTED = re.compile(r"[a-z_][a-z0-9_]*(?:\.[A-Za-z_]\w*)+")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:none|null|nil|true|false|undefined|empty|required|optional|string|str|bytes|int"
    r"|\*+|\.+|-+|_+|#+"
    r"|\?+|<[^>]*>|\$\{?[\w.]+\}?|%[\w.]+%?|\{\{.*\}\}|os\.[\w.]+.*|process\.env.*|getenv.*"
    r"|env\(.*|self\.[\w.]+|this\.[\w.]+|[\w.]+\(\)?)$"
)


def shannon_entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def _secret_looking(value: str) -> bool:
    """Not an ordinary word: has a digit, a symbol, or a capital inside; or is long."""
    if len(value) < 4:
        return False
    if _SNAKE.fullmatch(value) and all(
        _WORDY.fullmatch(p) or len(p) <= 3 for p in re.split(r"[_.]", value)
    ):
        return False  # a snake_case name: budget_usd_per_1k
    core = value.rstrip("!?.")  # "Thanks!" is a word
    if any(ch.isdigit() for ch in value) or not core.replace("-", "").isalnum():
        return True
    inner = value[1:]
    mixed = any(ch.isupper() for ch in inner) and any(ch.islower() for ch in inner)
    return mixed or len(value) >= 16


def _value_ok(value: str, strong: bool) -> bool:
    value = value.strip()
    if len(value) < 3 or _PLACEHOLDER.match(value):
        return False
    return strong or _secret_looking(value)


def _code_expression(text: str, start: int, end: int) -> bool:
    """A bare value that is code, not a literal: a call, an index, `a.b.c`, `self`, `lambda`."""
    value = text[start:end].lstrip("-!")
    if text[end : end + 1] in ("(", "[") or value.lower() in _CODE_WORDS:
        return True
    return _DOTTED.fullmatch(value) is not None


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while end > start and text[end - 1] in ".,:;!?)]}…" and not text[start:end].endswith("=="):
        if text[end - 1] == "!" and end - start > 3:  # a password may end with "!"
            break
        end -= 1
    return start, end


def _value_span(m: re.Match[str]) -> tuple[int, int] | None:
    for g in ("dq", "sq", "bq", "bare"):
        if m.groupdict().get(g) is not None:
            return m.start(g), m.end(g)
    return None


def _key_words(text: str) -> Iterator[tuple[int, bool]]:
    """End of each identifier holding a key word (`DB_PASSWORD`, `apiKey`), and whether the
    word names a password (then even a plain bare word after `=` is taken)."""
    pos = 0
    while (m := _KEY_CORE.search(text, pos)) is not None:
        pos = m.end()
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        ascii_letter = (before.isascii() and before.isalpha()) or (
            after.isascii() and after.isalpha()
        )
        if m.group().lower() in _SHORT_KEYS and ascii_letter:
            continue  # "bypass", "keyboard", "spin"
        if m.group().lower() == "key" and text.startswith(('="', "='"), m.end()):
            continue  # an attribute naming a field: <add key="Password" value="...">
        end = _IDENT.match(text, m.end()).end()  # type: ignore[union-attr]
        pos = max(pos, end)
        yield end, _PASSWORD_WORD.search(text, m.start(), end) is not None


def _keyword_hits(text: str) -> Iterator[Entity]:
    for end, password_word in _key_words(text):
        for tail, strong in _TAILS:
            m = tail.match(text, end)
            if m is not None:
                # after a password word, an assignment or a quoted value (even in prose) is
                # enough; after key/token/auth words the value must look like a secret too
                # (`key == "has_pii"`, `token=tok.text` are code)
                bare = m.groupdict().get("bare") is not None
                hit = _entity(text, m, password_word and (strong or not bare))
                if hit is not None:
                    yield hit
                    break
    for pattern in (_CLI, _CLI_USER, _SQL_BY, _SQL_PASSWORD):
        for m in pattern.finditer(text):
            hit = _entity(text, m, True)
            if hit is not None:
                yield hit
    for call in _CRED_CALL.finditer(text):
        close = text.find(")", call.end(), call.end() + 300)
        for m in _STRING_ARG.finditer(text, call.end(), close if close > 0 else call.end()):
            hit = _entity(text, m, True)
            if hit is not None:
                yield hit


def _entity(text: str, m: re.Match[str], strong: bool) -> Entity | None:
    span = _value_span(m)
    if span is None:
        return None
    start, end = _trim(text, *span)
    bare = m.groupdict().get("bare") is not None
    if bare and (end - start < 4 or _code_expression(text, start, end)):
        return None
    if not _value_ok(text[start:end], strong):
        return None
    return Entity("PASSWORD", start, end, text[start:end], 0.8)


def _pem_blocks(text: str) -> Iterator[Entity]:
    pos = 0
    while (m := _PEM_BEGIN.search(text, pos)) is not None:
        end_m = _PEM_END.search(text, m.end(), m.end() + 20_000)
        if end_m is not None:
            end = end_m.end()
        else:  # cut off: take the base64 lines that follow
            end = m.end()
            for line in re.finditer(r"\n([^\n]*)", text[m.end() : m.end() + 20_000]):
                if not _B64_LINE.fullmatch(line.group(1)):
                    break
                end = m.end() + line.end()
        yield Entity("PRIVATE_KEY", m.start(), end, text[m.start() : end], 1.0)
        pos = end


def _token_is_secret(tok: str, keyed: bool) -> bool:
    if len(tok) < (8 if keyed else 16):
        return False
    letters = sum(ch.isalpha() for ch in tok)
    digits = sum(ch.isdigit() for ch in tok)
    pieces = re.split(r"[_\-./+=~%]", tok)
    if not _UUID_LIKE.search(tok) and all(_wordlike(p) for p in pieces):
        return False  # names made of words and numbers: paths, snake_case, Qwen2.5-Coder-1.5B
    if keyed:
        enough = digits >= 1 or _random_letters(tok)
        return letters >= 1 and enough and shannon_entropy(tok) >= 2.5
    if letters < 5 or _is_iban(tok):
        return False  # mostly digits (phones, numbers) or an IBAN: identifiers, not secrets
    if digits < 2 and not _random_letters(tok):
        return False
    return shannon_entropy(tok) >= (3.0 if len(tok) >= 24 else 3.3)


class _Before:
    """Is there a match of `pattern` in the 80 characters before a position, on its line?
    (One pass over the text instead of a search per token.)"""

    def __init__(self, pattern: re.Pattern[str], text: str) -> None:
        self.text = text
        self.spans = [(m.start(), m.end()) for m in pattern.finditer(text)]
        self.starts = [s for s, _ in self.spans]

    def __call__(self, pos: int) -> bool:
        lo = max(self.text.rfind("\n", 0, pos) + 1, pos - 80)
        i = bisect_left(self.starts, lo)
        return i < len(self.spans) and self.spans[i][1] <= pos


def _tokens(text: str) -> Iterator[Entity]:
    keyed_at, named_at = _Before(_CONTEXT, text), _Before(_WEAK_CONTEXT, text)
    for m in _TOKEN.finditer(text):
        tok = m.group().rstrip(".")
        if len(tok) < 8:
            continue
        if text.startswith("@", m.end()) and "." in text[m.end() : m.end() + 64]:
            continue  # the local part of an e-mail address (the PII detector's)
        keyed = keyed_at(m.start())
        if not keyed and (_UUID.search(tok) or _HEX.fullmatch(tok)) and named_at(m.start()):
            continue  # a commit id, checksum or record id named as such
        whole = not tok.startswith("//")  # the rest of a URL: judge its parts
        if whole and _token_is_secret(tok, keyed) and not _is_path(tok):
            yield _token_entity(tok, m.start())
            continue
        if len(tok) < 16 and not keyed:
            continue
        for p in re.finditer(r"[^/.]+", tok):  # a path or a host: judge its parts
            if p.end() - p.start() < len(tok) and _token_is_secret(p.group(), keyed):
                yield _token_entity(p.group(), m.start() + p.start())


def _wordlike(piece: str) -> bool:
    """A short number, a short code, or mostly word-like parts (`Qwen2`, `SmolLM2`, `sha256`,
    `FIRST`): at most 2 letter/digit switches, at most 8 digits, and 60%+ of the letters in
    case-runs (3-12 capitals or 3+ lower-case) with a vowel in 5."""
    digits = sum(ch.isdigit() for ch in piece)
    letters = sum(ch.isalpha() for ch in piece)
    if digits > 8 or len(_SWITCH.findall(piece)) > 2:
        return False
    if letters <= 3:
        return True
    wordy = sum(
        len(w)
        for w in _CASE_RUN.findall(piece)
        if 3 <= len(w) <= (16 if w.islower() else 12)
        and sum(ch in "aeiouyAEIOUY" for ch in w) >= 0.2 * len(w)
    )
    return wordy >= 0.6 * letters


def _random_letters(tok: str) -> bool:
    """Long, both cases, few word-like parts: base62 noise (`KiASRCRiGFLPDiId...`), not
    names (`GermanNightclub`): under 40% of it in camel-case parts of 3+ letters with vowels."""
    if len(tok) < 20 or tok.lower() == tok or tok.upper() == tok:
        return False
    wordy = sum(
        len(w) for w in _CAMEL.findall(tok) if sum(ch in "aeiouyAEIOUY" for ch in w) >= 0.2 * len(w)
    )
    return wordy < 0.4 * len(tok)


def _is_iban(tok: str) -> bool:
    return bool(_IBAN.fullmatch(tok)) and sum(ch.isalpha() for ch in tok[4:]) <= 4


def _is_path(tok: str) -> bool:
    parts = [p for p in re.split(r"[/.]", tok) if p]
    return len(parts) >= 3 and sum(bool(_WORDY.fullmatch(p)) for p in parts) >= 2


def _token_entity(tok: str, start: int) -> Entity:
    etype = "API_KEY" if _PREFIXED.match(tok) else "SECRET"
    return Entity(etype, start, start + len(tok), tok, 0.6)


def _shapes(text: str) -> Iterator[Entity]:
    yield from _pem_blocks(text)
    for m in _JWT.finditer(text):
        yield Entity("JWT", m.start(), m.end(), m.group(), 0.95)
    for m in _URL_CRED.finditer(text):
        if m.group(1).split(":", 1)[1]:
            yield Entity("CONNECTION_STRING", m.start(1), m.end(1), m.group(1), 0.95)
    for m in _AUTH_SCHEME.finditer(text):
        if _secret_looking(m.group(1)):
            yield Entity("PASSWORD", m.start(1), m.end(1), m.group(1), 0.8)
    for m in _PREFIXED.finditer(text):
        yield Entity("API_KEY", m.start(), m.end(), m.group(), 0.9)


# --- merge ---------------------------------------------------------------------------------------


def _merge(text: str, found: list[Entity]) -> list[Entity]:
    found.sort(key=lambda e: (e.start, -e.end))
    out: list[Entity] = []
    for e in found:
        if out and e.start < out[-1].end:
            last = out[-1]
            best = min(last, e, key=lambda x: _PRIORITY.get(x.type, 9))
            end = max(last.end, e.end)
            out[-1] = Entity(
                best.type, last.start, end, text[last.start : end], max(last.score, e.score)
            )
        else:
            out.append(e)
    return out


def find_secrets(text: str, *, use_detect_secrets: bool = True) -> list[Entity]:
    """Secret values in `text` (sorted, non-overlapping; types in `SECRET_TYPES`)."""
    if not text:
        return []
    found = [*_shapes(text), *_keyword_hits(text), *_tokens(text)]
    if use_detect_secrets:
        found.extend(e for e in detect_secrets_hits(text) if not _PLACEHOLDER.match(e.text))
    return _merge(text, [e for e in found if e.end > e.start])
