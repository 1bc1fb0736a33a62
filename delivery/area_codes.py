"""The US state of each area code, taken from the geocoder data of phonenumbers (libphonenumber).

The table itself is delivery/us_area_codes.py, written by `python -m delivery.area_codes` from the
installed phonenumbers; tests/delivery/test_area_codes.py fails while the two disagree, so an
upgrade of phonenumbers that brings new area codes cannot be left out. Reading the geocoder data
when the table is needed instead would cost every web and worker process about 100 MB and half a
second: it holds every number prefix of the world.
"""

import re
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

from delivery.us_area_codes import STATE_BY_AREA_CODE

# The geocoder names a state in full ("Florida"), or a city and its USPS code ("Palm Beach, FL").
US_STATES = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "District of Columbia": "DC",
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
}
# Spellings the geocoder uses for two of them.
_OTHER_NAMES = {"Washington State": "WA", "Washington D.C.": "DC"}
_CITY_AND_STATE = re.compile(r", ([A-Z]{2})$")
# An area code without a description of its own takes the state most of its exchanges name, and
# only when they nearly agree: one stray "New York, NY" among New Jersey's 201 is data noise.
_AGREEMENT = 0.9
TABLE_PATH = Path(__file__).with_name("us_area_codes.py")


def state_for_area_code(area_code: str) -> str | None:
    """The USPS code of the state an area code belongs to (such as "FL"), or None if none."""
    return STATE_BY_AREA_CODE.get(area_code)


def area_codes_of(state: str) -> frozenset[str]:
    """Every area code of one state, given by its USPS code."""
    return frozenset(code for code, its_state in STATE_BY_AREA_CODE.items() if its_state == state)


# ---------------------------------------------------------------- building the table


def _state_named(description: str) -> str | None:
    """The USPS code of the US state a geocoder description names, or None (Canada, unknown)."""
    if description in US_STATES:
        return US_STATES[description]
    if description in _OTHER_NAMES:
        return _OTHER_NAMES[description]
    found = _CITY_AND_STATE.search(description)
    return found[1] if found and found[1] in US_STATES.values() else None


def derive_from_phonenumbers(
    geodata: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """Area code → USPS state code of every area code the geocoder data puts in a state."""
    if geodata is None:
        # Imported only here: the world's geocoder data is needed to build the table, not to use it.
        from phonenumbers.geodata import GEOCODE_DATA as geodata

    own: dict[str, str | None] = {}
    exchanges: dict[str, Counter[str]] = defaultdict(Counter)
    for prefix, names in geodata.items():
        if not prefix.startswith("1") or len(prefix) < 4 or "en" not in names:
            continue
        area_code, state = prefix[1:4], _state_named(names["en"])
        if len(prefix) == 4:
            own[area_code] = state
        elif state:
            exchanges[area_code][state] += 1
    table = {}
    for area_code in sorted(own.keys() | exchanges.keys()):
        if area_code in own:
            state = own[area_code]
        else:
            state = _agreed_state(area_code, exchanges[area_code])
        if state:
            table[area_code] = state
    return table


def _agreed_state(area_code: str, states: Counter[str]) -> str | None:
    if not states:
        return None
    (state, count), total = states.most_common(1)[0], states.total()
    if count < _AGREEMENT * total:
        raise ValueError(f"Area code {area_code}: the geocoder names several states {states}.")
    return state


def table_source(table: dict[str, str]) -> str:
    """The text of delivery/us_area_codes.py holding `table`."""
    lines = [f'    "{area_code}": "{state}",\n' for area_code, state in sorted(table.items())]
    return (
        '"""Area code → USPS state code, from phonenumbers\' geocoder data.\n\n'
        "Written by `python -m delivery.area_codes` (delivery/area_codes.py); do not edit.\n"
        '"""\n\n'
        "STATE_BY_AREA_CODE = {\n" + "".join(lines) + "}\n"
    )


if __name__ == "__main__":
    TABLE_PATH.write_text(table_source(derive_from_phonenumbers()))
    sys.stdout.write(f"Wrote {TABLE_PATH}.\n")
