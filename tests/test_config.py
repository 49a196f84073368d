"""Boolean settings typed on the command line."""

import pytest

from gan_core.config import as_flag
from gan_core.errors import BundleInputError


@pytest.mark.parametrize("value", [True, 1, "true", "True", "1", "yes", " on "])
def test_true_values(value):
    assert as_flag(value, "amp") is True


@pytest.mark.parametrize("value", [False, 0, None, "false", "False", "0", "no", "off", ""])
def test_false_values_including_the_string_false(value):
    assert as_flag(value, "amp") is False


def test_other_words_are_refused_with_the_setting_named():
    with pytest.raises(BundleInputError, match=r"resume: expected true or false, got 'maybe'"):
        as_flag("maybe", "resume")
