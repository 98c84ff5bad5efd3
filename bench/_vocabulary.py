"""A contact-centre vocabulary for generated case and contact text, most frequent first.

Real contact-centre text has thousands of distinct words whose frequencies fall off as Zipf's law
says (the word of rank r appears about 1/r as often as the first): a few function words and a
couple of hundred service words make most of the text, and a long tail of product names, places,
model and error codes makes the rest, each rare. `VOCABULARY` is that order: spoken function
words, then service words, then a generated tail of product and place names and codes (made of
syllables, deterministic). SQL draws rank r with probability about 1/r (`ZIPF_RANK`).
"""

from __future__ import annotations

import random

_FUNCTION_TEXT = """
i the to my and a is it of for on have not was with this that be me you can but they we no
an at as please still been there would about could when if your will just from are had so do
what out up now has or them again said by did get their all which any one our been back been
"""

_SERVICE_TEXT = """
account payment order refund delivery bill invoice customer call email phone number contract
engineer appointment broadband router internet service issue problem complaint change cancel
week today yesterday tomorrow morning afternoon time date day month year address card bank
direct debit charge charged overcharged price tariff plan upgrade downgrade renewal discount
offer voucher code password login locked reset access app website online website portal
parcel package courier tracking missing damaged late return label exchange replacement
warranty repair fault faulty broken error signal outage connection slow speed wifi mobile
sim roaming data minutes texts porting transfer meter reading gas electricity water boiler
heating radiator leak pressure energy supply supplier smart install installation visit
arrears debt collection letter reminder statement balance credit debit loyalty points
manager supervisor escalate escalation callback urgent asap waiting wait hold chat agent
advisor team store shop branch collection click collect stock item items product products
size colour wrong right correct incorrect received receive sent send sending arrived arrive
cancelled cancellation confirm confirmed confirmation reference ticket case update updated
details name surname postcode house flat street road town city moved moving move new old
first second third last times weeks months hours days compensation goodwill gesture fee fees
penalty exit early termination notice period cooling off terms conditions policy insurance
claim claims excess cover covered quote quotes premium renewal dispute chargeback fraud
security verification verify verified identity documents document proof photo upload
uploaded form forms signed signature consent privacy data protection request erase copy
paper paperless bills monthly annual yearly quarterly instalment instalments plan plans
pay paid paying unpaid owe owed outstanding due overdue late payment failed declined
"""
FUNCTION_WORDS = _FUNCTION_TEXT.split()
SERVICE_WORDS = _SERVICE_TEXT.split()

ONSETS = ["b", "br", "c", "ch", "cl", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "pr"]
ONSETS += ["qu", "r", "s", "sh", "st", "t", "tr", "v", "w", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou"]
CODAS = ["", "", "n", "r", "l", "s", "x", "m", "nd", "rt", "ck", "st"]


def _tail(count: int) -> list[str]:
    """Product, model and place names and error codes: the rare words of contact-centre text."""
    rng = random.Random(20)
    words: list[str] = []
    seen = set(FUNCTION_WORDS) | set(SERVICE_WORDS)
    while len(words) < count:
        if rng.random() < 0.08:
            word = rng.choice("efkmx") + str(rng.randrange(10, 999))  # an error or model code: e119
        else:
            word = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(rng.choice((2, 2, 3))))
            word += rng.choice(CODAS)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


VOCABULARY_SIZE = 6000
VOCABULARY = list(dict.fromkeys(FUNCTION_WORDS + SERVICE_WORDS))
VOCABULARY += _tail(VOCABULARY_SIZE - len(VOCABULARY))
RANK = {word: rank for rank, word in enumerate(VOCABULARY, 1)}
FUNCTION = set(FUNCTION_WORDS)

# A rank from 1 to the size of `:words` (an array parameter `w`) with probability about 1/r: the
# inverse of the cumulative ln(r + 1) / ln(size + 1).
ZIPF_WORD = "w[floor(exp(random() * ln(array_length(w, 1) + 1)))::int]"
