#!/usr/bin/env python3
"""Writes tests/fixtures/holidays_reference.csv from the `holidays` package.

The table is an independent reference for the rules in
src/domain/holidays.rs: the test `rules_match_the_reference_table` there
compares the two on every weekday of the covered years. This script is not
run by CI; it records how the checked-in table was made. Regenerate it when
VERIFIED_THROUGH moves (keep FIRST_YEAR..=LAST_YEAR equal to the test's
range), review the diff, and fix the rules or the list of known differences.

    python3 -m venv /tmp/hv && /tmp/hv/bin/pip install holidays==<version>
    /tmp/hv/bin/python tools/holidays/generate.py > tests/fixtures/holidays_reference.csv
"""

import datetime
import sys

import holidays

FIRST_YEAR = 2020
# Must equal holidays::VERIFIED_THROUGH.
LAST_YEAR = 2030

# Every country src/domain/holidays.rs has rules for, with the options that
# select the national set: no subdivision (so no regional holidays) except
# for GB, where the rules are the England and Wales bank holidays.
COUNTRIES = {
    code: {}
    for code in (
        "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO "
        "SE SI SK IS LI NO CH BR US"
    ).split()
}
COUNTRIES["GB"] = {"subdiv": "ENG"}

# Only the package's default category, public holidays: not bank, optional,
# half-day, school, government or de facto days.
CATEGORIES = ("public",)


def main() -> None:
    years = range(FIRST_YEAR, LAST_YEAR + 1)
    out = sys.stdout
    out.write(
        "# National public holidays, an independent reference for src/domain/holidays.rs.\n"
        f"# Source: the Python package `holidays` {holidays.__version__} (PyPI).\n"
        f"# Command: pip install holidays=={holidays.__version__}; then\n"
        "#   python tools/holidays/generate.py > tests/fixtures/holidays_reference.csv\n"
        f"# Generated: {datetime.date.today().isoformat()}\n"
        f"# Years: {FIRST_YEAR} to {LAST_YEAR}.\n"
        f"# Options: categories={list(CATEGORIES)}; no subdivision (national holidays\n"
        "# only) except GB, subdiv=\"ENG\" (England; Wales has the same bank holidays);\n"
        "# US without subdivision is the federal set; names in English (language\n"
        "# \"en_US\") where the package has it, otherwise in its default language.\n"
        "# Weekend dates are kept; the comparison ignores them.\n"
        "country,date,name\n"
    )
    for code, options in COUNTRIES.items():
        cls = type(holidays.country_holidays(code))
        language = "en_US" if "en_US" in getattr(cls, "supported_languages", ()) else None
        table = holidays.country_holidays(
            code, years=years, categories=CATEGORIES, language=language, **options
        )
        for date, name in sorted(table.items()):
            out.write(f"{code},{date.isoformat()},{name}\n")


if __name__ == "__main__":
    main()
