"""The protections' old ``...Attack`` names (and shaping's ``Compose``) still work, with a DeprecationWarning."""

import importlib
import warnings

import pytest

import photoshield.protect as protect
from photoshield.protect import shaping

OLD_TO_NEW = {
    "FacialAttack": ("facial", "FacialProtection"),
    "EncoderAttack": ("encoder", "EncoderProtection"),
    "AttentionAttack": ("attention", "AttentionProtection"),
    "DeformationAttack": ("deformation", "DeformationProtection"),
}


@pytest.mark.parametrize("old", sorted(OLD_TO_NEW))
def test_old_protection_names_warn_and_give_the_renamed_class(old):
    module_name, new = OLD_TO_NEW[old]
    module = importlib.import_module(f"photoshield.protect.{module_name}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names are served without a warning
        cls = getattr(protect, new)
    assert cls is getattr(module, new) and cls.__name__ == new
    with pytest.warns(DeprecationWarning, match=f"photoshield.protect.{old} is deprecated; use photoshield.protect.{new}"):
        assert getattr(protect, old) is cls
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; use .*{new}"):
        assert getattr(module, old) is cls


def test_from_import_of_an_old_name_warns_at_the_caller():
    with pytest.warns(DeprecationWarning) as caught:
        from photoshield.protect.facial import FacialAttack  # noqa: F401
    assert caught[0].filename == __file__


def test_shaping_compose_is_compose_shapers():
    with pytest.warns(DeprecationWarning, match="use photoshield.protect.shaping.ComposeShapers"):
        assert shaping.Compose is shaping.ComposeShapers
    assert isinstance(shaping.faceshield_shaper(), shaping.ComposeShapers)


def test_unknown_names_still_raise_attribute_error():
    for module in (protect, shaping, importlib.import_module("photoshield.protect.facial")):
        with pytest.raises(AttributeError, match="no attribute 'NoSuchAttack'"):
            module.NoSuchAttack
    assert not hasattr(protect, "Compose")  # shaping's Compose was never a name of the package
