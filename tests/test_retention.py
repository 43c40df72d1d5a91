import pytest

from ovapipe.retention import NightlyTemplate, to_delete


def t(build_id, dc="DC0", profile="ubuntu-2004-efi"):
    return NightlyTemplate(f"{profile}-{build_id}", dc, profile, build_id)


def test_keeps_newest_per_profile_and_datacenter():
    templates = [t("20261126"), t("20261127"), t("20261128"), t("20261125", dc="DC1"),
                 t("20261127", profile="ubuntu-2204-efi")]
    doomed = to_delete(templates, keep=2, just_published=set())
    assert [d.build_id for d in doomed] == ["20261126"]


def test_never_deletes_the_one_just_published_even_if_older_sorting():
    templates = [t("20261128"), t("20261127")]
    assert to_delete(templates, keep=1, just_published={"ubuntu-2004-efi-20261127"}) == []


def test_keep_must_be_positive():
    with pytest.raises(ValueError):
        to_delete([], keep=0, just_published=set())
