import pytest

from campaigns.segments import count_segments


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", "GSM-7", 0),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("é" * 70 + "ж" * 0, "GSM-7", 1),  # é is in the GSM basic set
        ("ж" * 70, "UCS-2", 1),
        ("ж" * 71, "UCS-2", 2),
        ("ж" * 134, "UCS-2", 2),
        ("ж" * 135, "UCS-2", 3),
    ],
)
def test_it_counts_segments_at_the_boundaries(text, encoding, segments):
    count = count_segments(text)
    assert (count.encoding, count.segments) == (encoding, segments)


def test_it_switches_the_whole_message_to_ucs2_for_one_non_gsm_character():
    count = count_segments("a" * 69 + "ć")
    assert count.encoding == "UCS-2"
    assert count.segments == 1
    assert count_segments("a" * 70 + "ć").segments == 2


def test_it_counts_gsm_extension_characters_double():
    count = count_segments("€" * 80)
    assert (count.encoding, count.characters, count.units, count.segments) == ("GSM-7", 80, 160, 1)
    assert count_segments("a" * 159 + "{").segments == 2
    assert count_segments("a" * 158 + "[").segments == 1


def test_it_counts_an_emoji_as_two_ucs2_units():
    count = count_segments("👍" * 35)
    assert (count.encoding, count.characters, count.units, count.segments) == ("UCS-2", 35, 70, 1)
    assert count_segments("👍" * 35 + "a").segments == 2


def test_it_reports_what_is_left_in_the_last_segment():
    assert count_segments("a" * 150).remaining == 10
    assert count_segments("a" * 161).remaining == 153 * 2 - 161
