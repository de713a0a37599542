"""Seeded truths of AWS spend, and Cost Explorer answers paged out of them."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

SERVICES = ("Amazon Elastic Compute Cloud - Compute", "Amazon Simple Storage Service",
            "AWS Lambda", "Amazon Relational Database Service")
RECORD_TYPES = ("Usage", "Credit", "Tax", "Recurring reservation fee", "DiscountedUsage",
                "Savings Plan Negation")

# (day, service, record type, currency) -> (unblended, amortized)
Truth = dict[tuple[date, str, str, str], tuple[Decimal, Decimal]]


def seeded_truth(first: date, days: int, seed: int = 7) -> Truth:
    """Spend on `days` days from `first`: several services and record types a day, amounts
    with up to 6 decimals, credits negative; one day also has a charge in EUR."""
    rnd = random.Random(seed)
    truth: Truth = {}
    for n in range(days):
        day = first + timedelta(days=n)
        for service in SERVICES:
            for record_type in rnd.sample(RECORD_TYPES, 3):
                amount = Decimal(rnd.randrange(1, 5_000_000_000)).scaleb(-6)
                if record_type == "Credit":
                    amount = -amount
                amortized = amount if record_type != "Recurring reservation fee" else Decimal(0)
                truth[(day, service, record_type, "USD")] = (amount, amortized)
    truth[(first, "AWS Marketplace", "Usage", "EUR")] = (Decimal("12.345678"),
                                                        Decimal("12.345678"))
    return truth


def ce_pages(truth: Truth, estimated: set[date] | None = None, groups_per_page: int = 25,
             tag: str = "p") -> list[dict]:
    """GetCostAndUsage answers for `truth`, a day's groups split across pages where a page
    fills up (as Cost Explorer pages); days in `estimated` are marked Estimated."""
    estimated = estimated or set()
    by_day: dict[date, list] = defaultdict(list)
    for (day, service, record_type, currency), (unblended, amortized) in sorted(truth.items()):
        by_day[day].append({"Keys": [service, record_type], "Metrics": {
            "UnblendedCost": {"Amount": str(unblended), "Unit": currency},
            "AmortizedCost": {"Amount": str(amortized), "Unit": currency}}})
    pages: list[list[dict]] = [[]]
    room = groups_per_page
    for day in sorted(by_day):
        groups = by_day[day]
        while groups:
            if room == 0:
                pages.append([])
                room = groups_per_page
            take, groups = groups[:room], groups[room:]
            room -= len(take)
            pages[-1].append({"TimePeriod": {"Start": day.isoformat(),
                                             "End": (day + timedelta(days=1)).isoformat()},
                              "Total": {}, "Groups": take, "Estimated": day in estimated})
    answers = []
    for i, results in enumerate(pages):
        answer = {"ResultsByTime": results, "DimensionValueAttributes": [],
                  "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"},
                                       {"Type": "DIMENSION", "Key": "RECORD_TYPE"}]}
        if i < len(pages) - 1:
            answer["NextPageToken"] = f"{tag}-{i + 1}"
        answers.append(answer)
    return answers


def totals(truth: Truth, key) -> dict:
    """Sums of billed (unblended) and effective (amortized) cost by key(day, service, currency)."""
    out: dict = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    for (day, service, _record, currency), (unblended, amortized) in truth.items():
        k = key(day, service, currency)
        out[k][0] += unblended
        out[k][1] += amortized
        out[k][2] += 1
    return {k: tuple(v) for k, v in out.items()}
