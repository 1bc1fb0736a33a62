"""What an inbound text means: an opt-out, an opt-in, a request for help, or a reply.

The FCC's 2024 order counts any reasonable revocation, so an opt-out is recognised however it
is typed: the text is normalised (Unicode NFKC, so full-width letters are plain ones; invisible
characters, punctuation and emoji dropped; case ignored) and split into words. It is an opt-out
when its words spell a keyword ("stop all", "Opt-Out"), or when it is a short message built
around one: a keyword plus only words that add nothing ("STOP please", "stop texting me",
"Unsubscribe me"). Any other word makes it a reply ("Stop by tomorrow at 3?").
"""

import unicodedata

from delivery.models import ReplyKind

# Each keyword as the letters of its words run together ("opt out" and "opt-out" → OPTOUT).
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "UNSUB", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
# Phrases that revoke consent only as a whole (no single word of them does).
OPT_OUT_PHRASES = (
    ("OPT", "OUT"),
    ("REMOVE", "ME"),
    ("DO", "NOT", "TEXT"),
    ("DONT", "TEXT"),
    ("NO", "MORE", "TEXTS"),
    ("LEAVE", "ME", "ALONE"),
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# Words that can stand beside a keyword without changing what it asks for.
FILLER_WORDS = frozenset(
    {
        "PLEASE", "PLS", "PLZ", "NOW", "ME", "MY", "I", "WANT", "WOULD", "LIKE", "TO", "IT",
        "THIS", "THAT", "THESE", "ALL", "TEXT", "TEXTS", "TEXTING", "MESSAGE", "MESSAGES",
        "MESSAGING", "SMS", "SENDING", "CONTACTING", "CALLING", "FROM", "LIST", "NUMBER",
        "US", "YOU", "THANKS", "THANK", "THX", "OK", "OKAY", "JUST", "RIGHT", "AWAY",
        "IMMEDIATELY", "ASAP", "AT", "ONCE", "ANY", "MORE", "SO", "AND", "THE", "A",
    }
)  # fmt: skip
# A message with more words than this is a sentence, not a keyword said politely.
SHORT_MESSAGE_WORDS = 6


def words(body: str) -> list[str]:
    """The message's words, upper-cased, after Unicode normalisation; everything else dropped."""
    text = unicodedata.normalize("NFKC", body).upper()
    out, word = [], []
    for char in text:
        category = unicodedata.category(char)
        if category[0] in "LN":
            word.append(char)
        elif category == "Cf" or char in "'\u2019":
            continue  # zero-width and other invisible characters, apostrophes ("don't")
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out


def reply_kind(body: str) -> ReplyKind:
    """What an inbound text means (see the module's docstring for the rule)."""
    found = words(body)
    if _is(found, OPT_OUT_KEYWORDS, OPT_OUT_PHRASES):
        return ReplyKind.OPT_OUT
    if "".join(found) in OPT_IN_KEYWORDS:
        return ReplyKind.OPT_IN
    if _is(found, HELP_KEYWORDS, ()):
        return ReplyKind.HELP
    return ReplyKind.REPLY


def _is(found: list[str], keywords: frozenset[str], phrases: tuple[tuple[str, ...], ...]) -> bool:
    if not found:
        return False
    if "".join(found) in keywords:
        return True
    if len(found) > SHORT_MESSAGE_WORDS:
        return False
    rest, matched = list(found), False
    for phrase in phrases:
        for start in range(len(rest) - len(phrase) + 1):
            if tuple(rest[start : start + len(phrase)]) == phrase:
                del rest[start : start + len(phrase)]
                matched = True
                break
    for word in list(rest):
        if word in keywords:
            rest.remove(word)
            matched = True
    return matched and all(word in FILLER_WORDS for word in rest)
