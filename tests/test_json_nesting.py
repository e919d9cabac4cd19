"""The one JSON nesting scan (fasttune._json_nesting): right on any JSON, and linear in
the text's length whatever it holds, so that no reader or request body can stall on it."""
import json

from hypothesis import given, settings, strategies as st

from fasttune._json_nesting import nesting_depth, nests_deeper_than, parse_json
from fasttune.web_server import MAX_BODY_BYTES

from runaway_testing import stopped_after

# A quote, then escaped quotes (and half an escape) to the end: an unterminated string.
# A scan that, failing to close a string, retries from each later quote does about
# (n/2)^2/2 = 10^11 steps on this 1 MiB (~50 minutes); a linear one reads it once.
ESCAPED_QUOTES = '"' + '\\"' * (MAX_BODY_BYTES // 2 - 1) + '\\'


def test_an_unterminated_string_of_escaped_quotes_is_scanned_once():
    assert len(ESCAPED_QUOTES) == MAX_BODY_BYTES
    with stopped_after(20, "the nesting scan of 1 MiB of escaped quotes"):
        assert nesting_depth(ESCAPED_QUOTES) == 0
        # Brackets before the string count; those after its opening quote are inside it.
        assert nesting_depth("[{" + ESCAPED_QUOTES + "[[") == 2
        assert nesting_depth(ESCAPED_QUOTES.encode()) == 0
        assert nests_deeper_than("[" * 300 + ESCAPED_QUOTES, 256)


def value_depth(value):
    if isinstance(value, dict):
        return 1 + max(map(value_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(value_depth, value), default=0)
    return 0


# Strings full of what a scan could mistake for structure.
tricky_text = st.text(alphabet='[]{}"\\\n ab\u00e9', max_size=8)
json_values = st.recursive(
    st.none() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(json_values, st.booleans())
def test_the_depth_of_any_json_is_that_of_its_value(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert nesting_depth(text) == value_depth(value)
    assert nesting_depth(text.encode("utf-16")) == value_depth(value)  # bytes decode as json.loads decodes them
    assert parse_json(text, max_depth=value_depth(value)) == value
