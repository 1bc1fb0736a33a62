"""The area code → state table behind the state quiet hours, against phonenumbers' own data."""

import functools
import re

import phonenumbers
import pytest
from phonenumbers import PhoneMetadata, PhoneNumberFormat, PhoneNumberType
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from delivery.area_codes import (
    TABLE_PATH,
    US_STATES,
    area_codes_of,
    derive_from_phonenumbers,
    state_for_area_code,
    table_source,
)
from delivery.us_area_codes import STATE_BY_AREA_CODE
from delivery.windows import (
    FLORIDA_AREA_CODES,
    OKLAHOMA_AREA_CODES,
    QUIET_HOURS_DEFAULT,
    QUIET_HOURS_FLORIDA_OKLAHOMA,
    US_REGIONS,
    quiet_hours_for,
)

GEOGRAPHIC = {
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
}
# Valid US numbers that belong to no place: toll-free (8XX), premium (900), personal (5XX).
NOT_PLACES = {
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.PERSONAL_NUMBER,
}
# NANPA's assignments: 324, 645 and 728 are Florida's newest overlays, 572 Oklahoma's.
KNOWN_FLORIDA = {"239", "305", "321", "324", "352", "386", "407", "448", "561", "645", "656"}
KNOWN_FLORIDA |= {"689", "727", "728", "754", "772", "786", "813", "850", "863", "904", "941"}
KNOWN_FLORIDA |= {"954"}
KNOWN_OKLAHOMA = {"405", "539", "572", "580", "918"}
# The number types is_valid_number tells apart (general_desc only bounds them all).
NUMBER_TYPES = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost")
NUMBER_TYPES += ("personal_number", "voip", "pager", "uan", "voicemail")


@functools.cache
def area_codes_in_use() -> dict[str, phonenumbers.PhoneNumber]:
    """A number phonenumbers accepts under every area code it knows in +1, by area code."""
    # Any valid number matches one of its region's number-type patterns, so a number matching
    # none of them anywhere in +1 is invalid: 640,000 regex tests find every area code in use in
    # half a second (is_valid_number on each would take ten), and is_valid_number confirms each.
    patterns = []
    for region in COUNTRY_CODE_TO_REGION_CODE[1]:
        metadata = PhoneMetadata.metadata_for_region(region)
        for number_type in NUMBER_TYPES:
            desc = getattr(metadata, number_type)
            if desc is not None and desc.national_number_pattern:
                patterns.append(desc.national_number_pattern)
    any_type = re.compile("|".join(f"(?:{pattern})" for pattern in patterns))
    found = {}
    for area_code in range(200, 1000):
        for exchange in range(200, 1000):
            national = f"{area_code}{exchange}4567"
            if any_type.fullmatch(national):
                number = phonenumbers.parse(f"+1{national}")
                if phonenumbers.is_valid_number(number):
                    found[str(area_code)] = number
                    break
    return found


def test_it_finds_the_area_codes_in_use_under_plus_one():
    in_use = area_codes_in_use()
    # Sanity of the search itself: the US, Canada, the Caribbean and the territories.
    assert len(in_use) > 450
    regions = {phonenumbers.region_code_for_number(number) for number in in_use.values()}
    assert regions == set(COUNTRY_CODE_TO_REGION_CODE[1])


def test_it_places_every_us_area_code_in_a_state_or_a_territory():
    in_use = area_codes_in_use()
    us = {
        area_code: number
        for area_code, number in in_use.items()
        if phonenumbers.region_code_for_number(number) in US_REGIONS
    }
    places = {
        area_code
        for area_code, number in us.items()
        if phonenumbers.region_code_for_number(number) == "US"
        and phonenumbers.number_type(number) in GEOGRAPHIC
    }
    unplaced = sorted(area_code for area_code in places if area_code not in STATE_BY_AREA_CODE)
    assert unplaced == [], "run `python -m delivery.area_codes` after upgrading phonenumbers"
    # The table holds exactly the states' area codes: none of Canada, nor a stale one.
    assert set(STATE_BY_AREA_CODE) == places
    assert set(STATE_BY_AREA_CODE.values()) == set(US_STATES.values())
    for area_code, number in us.items():
        region = phonenumbers.region_code_for_number(number)
        if area_code not in places:
            assert region != "US" or phonenumbers.number_type(number) in NOT_PLACES, area_code
        quiet = quiet_hours_for(phonenumbers.format_number(number, PhoneNumberFormat.E164))
        early = STATE_BY_AREA_CODE.get(area_code) in {"FL", "OK"}
        assert quiet == (QUIET_HOURS_FLORIDA_OKLAHOMA if early else QUIET_HOURS_DEFAULT), area_code


def test_it_matches_the_geocoder_data_of_the_installed_phonenumbers():
    # Fails after an upgrade of phonenumbers that changes the table, until it is written again.
    assert TABLE_PATH.read_text() == table_source(derive_from_phonenumbers()), (
        "run `python -m delivery.area_codes` after upgrading phonenumbers"
    )


def test_it_knows_florida_and_oklahoma_area_codes_including_the_newest():
    assert KNOWN_FLORIDA <= FLORIDA_AREA_CODES == area_codes_of("FL")
    assert KNOWN_OKLAHOMA <= OKLAHOMA_AREA_CODES == area_codes_of("OK")
    assert {state_for_area_code(code) for code in ("324", "645", "728")} == {"FL"}
    assert state_for_area_code("572") == "OK"
    # Neighbours keep the federal hours.
    assert {state_for_area_code(code) for code in ("912", "334", "479", "940")} == {
        "GA",
        "AL",
        "AR",
        "TX",
    }
    assert state_for_area_code("416") is None  # Toronto
    assert state_for_area_code("800") is None


@pytest.mark.parametrize(
    ("geodata", "table"),
    [
        # The area code's own description decides; a stray exchange elsewhere does not.
        ({"1201": {"en": "New Jersey"}, "1201631": {"en": "New York, NY"}}, {"201": "NJ"}),
        ({"1728": {"en": "Palm Beach, FL"}}, {"728": "FL"}),
        (
            {"1206": {"en": "Washington State"}, "1202": {"en": "Washington D.C."}},
            {
                "202": "DC",
                "206": "WA",
            },
        ),
        # Without one, the state its exchanges name.
        ({"1203200": {"en": "New Haven, CT"}, "1203201": {"en": "Connecticut"}}, {"203": "CT"}),
        # Canada and other countries are not states.
        ({"1416": {"en": "Ontario"}, "1905200": {"en": "Toronto, ON"}, "44": {"en": "UK"}}, {}),
    ],
)
def test_it_reads_the_state_from_the_geocoder_descriptions(geodata, table):
    assert derive_from_phonenumbers(geodata) == table


def test_it_refuses_to_guess_when_exchanges_name_different_states():
    geodata = {"1999200": {"en": "Reno, NV"}, "1999201": {"en": "Boise, ID"}}
    with pytest.raises(ValueError, match="999"):
        derive_from_phonenumbers(geodata)
