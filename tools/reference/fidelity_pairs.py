"""Writes tests/fixtures/fidelity-pairs.jsonl: 120 varied (question, context) pairs for the
half-precision fidelity measurement (examples/fidelity.rs). Seeded and deterministic.

The pairs mix domains (history, science, geography, sport, business, literature, everyday
notes), question types (who, what, when, where, how many, which, why), context lengths from one
sentence to several paragraphs (some past 384 tokens, so truncation is exercised), accents,
non-Latin scripts and numbers. Facts are invented; what matters is that the text is varied.

    python tools/reference/fidelity_pairs.py   (from the repository root)
"""

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "fidelity-pairs.jsonl"

PEOPLE = ["Amara Okafor", "Lars Henriksen", "Mei Lin", "José Álvarez", "Priya Raman", "Tomasz Kowalski",
          "Hannah Schäfer", "Kwame Mensah", "Yuki Tanaka", "Olivia Brennan", "Ahmed Farouk", "Sofia Rossi",
          "Dmitri Volkov", "Aiko Mori", "Chloé Dubois", "Rafael Mendes"]
PLACES = ["Lisbon", "Kraków", "Nairobi", "Osaka", "Valparaíso", "Tromsø", "Marrakesh", "Edinburgh",
          "Hội An", "Québec City", "Tbilisi", "Reykjavík", "Cusco", "Ljubljana", "Zanzibar", "Hobart"]
THINGS = ["a suspension bridge", "a botanical garden", "a tidal power station", "an observatory",
          "a textile museum", "a seed bank", "a ferry terminal", "a concert hall", "a glass factory",
          "a lighthouse", "a railway viaduct", "a public library"]
FIELDS = ["marine biology", "materials science", "medieval history", "number theory", "glaciology",
          "linguistics", "epidemiology", "astrophysics", "urban planning", "ceramics"]
COMPANIES = ["Northwind Traders", "Blue Heron Labs", "Kestrel Logistics", "Saffron Foods", "Ironbark Mining",
             "Lumen Optics", "Tidewater Shipping", "Maple & Finch"]
SPORTS = ["marathon", "chess olympiad", "rowing regatta", "cycling tour", "ski jumping cup", "badminton open"]
FILLER = [
    "Local newspapers covered the event for several weeks.",
    "The weather that season was unusually mild.",
    "Critics at the time disagreed about its importance.",
    "Several smaller projects were cancelled in the same year.",
    "Visitors can still see the original plans in the city archive.",
    "Funding came partly from private donors and partly from the regional council.",
    "A second edition followed a few years later with minor corrections.",
    "The surrounding district changed a great deal in the following decades.",
    "Historians continue to debate the exact sequence of events.",
    "Many residents remember the opening ceremony vividly.",
]


def sentence_pool(r):
    p, q = r.sample(PEOPLE, 2)
    place, place2 = r.sample(PLACES, 2)
    year = r.randint(1820, 2023)
    n = r.randint(3, 98000)
    thing = r.choice(THINGS)
    field = r.choice(FIELDS)
    company = r.choice(COMPANIES)
    sport = r.choice(SPORTS)
    return [
        (f"{thing.capitalize()} was built in {place} in {year} to a design by {p}.",
         [(f"Who designed {thing} in {place}?", p), (f"When was {thing} in {place} built?", str(year)),
          (f"Where was {thing} designed by {p} built?", place)]),
        (f"{p} studied {field} in {place} and later moved to {place2}, where she founded a laboratory with {n} staff.",
         [(f"What did {p} study?", field), (f"How many staff did the laboratory have?", str(n)),
          (f"Where did {p} found a laboratory?", place2)]),
        (f"In {year}, {company} reported revenue of {n} million euros, mostly from its branch in {place}.",
         [(f"How much revenue did {company} report in {year}?", f"{n} million euros"),
          (f"Which branch earned most of {company}'s revenue?", place)]),
        (f"The {year} {sport} in {place} was won by {p}, ahead of {q}, after {n % 90 + 2} rounds.",
         [(f"Who won the {year} {sport}?", p), (f"Who came second in the {sport} in {place}?", q),
          (f"How many rounds did the {sport} last?", str(n % 90 + 2))]),
        (f"Because the river flooded every spring, the council of {place} moved the market to the hill in {year}.",
         [(f"Why did {place} move its market?", "the river flooded every spring"),
          (f"When did {place} move the market to the hill?", str(year))]),
        (f"{q}'s novel about {place} sold {n} copies in its first year and was translated into {n % 40 + 2} languages.",
         [(f"How many copies did {q}'s novel sell?", str(n)), (f"Who wrote the novel about {place}?", q)]),
    ]


def pair(r, i):
    pool = sentence_pool(r)
    main, questions = r.choice(pool)
    question, _answer = r.choice(questions)
    others = [s for s, _ in sentence_pool(r) if s != main]
    kind = i % 6
    if kind == 0:
        sentences = [main]
    elif kind in (1, 2):
        sentences = r.sample(others, 2) + [main] + r.sample(FILLER, 2)
    elif kind == 3:
        sentences = r.sample(FILLER, 3) + r.sample(others, 3) + [main] + r.sample(FILLER, 3)
    elif kind == 4:
        # Past 384 tokens: the context is truncated, sometimes before the answer.
        sentences = [s for _ in range(4) for s, _ in sentence_pool(r)] + r.sample(FILLER, 6)
        sentences.insert(r.randint(0, len(sentences)), main)
    else:
        sentences = [main] + r.sample(others, 1)
    if kind in (1, 3):
        r.shuffle(sentences)
    context = " ".join(sentences)
    if i % 17 == 0:
        context = "注記: この文書は翻訳です。 " + context
    if i % 23 == 0:
        question = question.lower()
    return {"id": f"fidelity-{i:03d}", "question": question, "context": context}


def main():
    r = random.Random(2026)
    with OUT.open("w") as f:
        for i in range(120):
            f.write(json.dumps(pair(r, i), ensure_ascii=False) + "\n")
    print(OUT)


if __name__ == "__main__":
    main()
