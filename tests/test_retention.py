import datetime as dt
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ovapipe.retention import (
    NightlyTemplate,
    apply_retention,
    plan_retention,
    prune_output,
    to_delete,
)

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
PROFILE = "ubuntu-2004-efi"


def t(stamp: str, dc: str = "DC0", profile: str = PROFILE) -> NightlyTemplate:
    name = f"{profile}-{stamp}-abc1234"
    return NightlyTemplate(name, dc, profile, name)


def names(templates: list[NightlyTemplate]) -> list[str]:
    return [x.name for x in templates]


def test_keeps_newest_per_profile_and_datacenter() -> None:
    templates = [t("20261126-010000"), t("20261127-010000"), t("20261128-010000"),
                 t("20261125-010000", dc="DC1"), t("20261127-010000", profile="ubuntu-2204-efi")]
    doomed = to_delete(templates, keep=2, just_published=set(), now=NOW)
    assert names(doomed) == [f"{PROFILE}-20261126-010000-abc1234"]


def test_never_deletes_the_one_just_published_even_if_older_sorting() -> None:
    templates = [t("20261128-010000"), t("20261127-010000")]
    assert to_delete(templates, keep=1, just_published={t("20261127-010000").name}, now=NOW) == []


def test_a_future_stamp_holds_no_slot_and_is_reported_not_deleted() -> None:
    """Measured: a skewed runner's template held a slot forever; the real previous nightlies
    were deleted."""
    future, newest, older = t("20991231-235959"), t("20261202-010000"), t("20261201-010000")
    plan = plan_retention([future, newest, older], keep=2, just_published={newest.name}, now=NOW)
    assert plan.doomed == []
    assert plan.future == [future]
    plan = plan_retention([future, newest, older], keep=1, just_published={newest.name}, now=NOW)
    assert plan.doomed == [older]


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError):
        to_delete([], keep=0, just_published=set())


def test_local_output_is_pruned_with_the_same_keep(tmp_path: Path) -> None:
    """Measured: output/ was never pruned (about 380 MB a run)."""
    image = "ubuntu-2004-efi-kube-v1.27.3"
    for stamp in ("20261130-010000", "20261201-010000", "20261202-010000", "20991231-000000"):
        (tmp_path / f"{image}-{stamp}-abc1234-0a1b2c3d").mkdir()
    (tmp_path / "report").mkdir()
    (tmp_path / f"{image}-notes").mkdir()
    (tmp_path / "ubuntu-2204-efi-kube-v1.27.3-20261130-010000-abc1234-0a1b2c3d").mkdir()
    newest = f"{image}-20261202-010000-abc1234-0a1b2c3d"
    pruned = prune_output(tmp_path, 2, {newest}, NOW)
    assert pruned == [f"{image}-20261130-010000-abc1234-0a1b2c3d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        f"{image}-20261201-010000-abc1234-0a1b2c3d", newest,
        f"{image}-20991231-000000-abc1234-0a1b2c3d", "report", f"{image}-notes",
        "ubuntu-2204-efi-kube-v1.27.3-20261130-010000-abc1234-0a1b2c3d"])


def test_build_ids_of_every_naming_give_their_stamp() -> None:
    from ovapipe.retention import build_time

    expected = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
    for name in (f"{PROFILE}-20261201-010000-abc1234",
                 f"{PROFILE}-20261201-010000-abc1234-123456-2",
                 "ubuntu-2004-efi-kube-v1.27.3-20261201-010000-abc1234-0a1b2c3d"):
        assert build_time(name) == expected, name
    assert build_time(f"{PROFILE}-notes") is None


# ---- against the simulator -------------------------------------------------------------------

def _publish(sim: Any, ova: Path, out: Path, name: str, pipeline: str | None,
             folder: str | None = None) -> Any:
    from ovapipe.progress import Progress
    from ovapipe.vsphere.publish import PublishOptions, publish

    opts = PublishOptions(ova=ova, datacenters=("DC0",), cluster="DC0_C0",
                          datastore="LocalDS_0", network="VM Network", output_dir=out,
                          name=name, pipeline_id=pipeline, folder=folder,
                          facts={"nightly.profile": PROFILE, "nightly.build_id": name})
    [record] = publish(opts, sim.connection, log=io.StringIO(),
                       progress=lambda label, total: Progress(label, total, io.StringIO(),
                                                              tty=False))
    return record


def linked_clone(sim: Any, template_moref: str, name: str) -> None:
    """A VM cloned from the template's `root` snapshot, as CAPV's linkedClone mode makes it."""
    from pyVmomi import vim

    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.inventory import properties, retrieve
    from ovapipe.vsphere.tasks import wait_for_task

    with session(sim.connection) as si:
        template = vim.VirtualMachine(template_moref, si._stub)
        props = properties(si, template, ["parent", "snapshot"])
        pool = retrieve(si, vim.ClusterComputeResource, ["resourcePool"])[0]
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(
            pool=pool.get("resourcePool"), diskMoveType="createNewChildDiskBacking"),
            snapshot=props["snapshot"].currentSnapshot, powerOn=False, template=False)
        wait_for_task(template.CloneVM_Task(folder=props["parent"], name=name, spec=spec),
                      "linked clone")


def make_team_folder(sim: Any, name: str) -> None:
    from pyVmomi import vim

    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.inventory import datacenter, retrieve

    with session(sim.connection) as si:
        dc = datacenter(si, "DC0")
        vm_folder = next(f.obj for f in retrieve(si, vim.Folder, ["name"], dc.obj)
                         if f.name == "vm")
        vm_folder.CreateFolder(name)


@pytest.mark.simulator
@pytest.mark.slow
def test_retention_deletes_only_its_own_old_templates(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    """Measured: keep=2 deleted another team's templates in /DC0/vm/teamB (same profile),
    including one a VM was cloned from."""
    from pyVmomi import vim

    from ovapipe.vsphere.connect import session
    from ovapipe.vsphere.inventory import retrieve

    make_team_folder(simulator, "teamB")
    out = tmp_path / "out"
    stamp = lambda day: f"{PROFILE}-202611{day:02d}-010000-abc1234"  # noqa: E731
    cloned = _publish(simulator, efi_ova, out, stamp(20), "site-a")
    old = [_publish(simulator, efi_ova, out, stamp(d), "site-a") for d in (21, 22)]
    _publish(simulator, efi_ova, out, stamp(23), "site-a", folder="teamB")  # same id, elsewhere
    _publish(simulator, efi_ova, out, stamp(24), "team-b")  # another site's, same folder
    future = _publish(simulator, efi_ova, out, f"{PROFILE}-20991231-010000-abc1234", "site-a")
    new = _publish(simulator, efi_ova, out, stamp(28), "site-a")
    linked_clone(simulator, cloned.moref, "capv-worker")
    with session(simulator.connection) as si:
        result = apply_retention(si, "DC0", PROFILE, 1, {new.template}, "site-a")
        left = {vm.name for vm in retrieve(si, vim.VirtualMachine, ["name"])}
    assert sorted(result.deleted) == sorted(r.template for r in old), result.message()
    assert not {r.template for r in old} & left
    for kept in (cloned.template, stamp(23), stamp(24), future.template, new.template,
                 "capv-worker"):
        assert kept in left
    message = result.message()
    assert f"kept {cloned.template}: capv-worker use its disks" in message
    assert f"kept {future.template}: its build stamp is in the future" in message


@pytest.mark.simulator
@pytest.mark.slow
def test_without_a_pipeline_id_retention_deletes_nothing(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    from ovapipe.vsphere.connect import session

    first = _publish(simulator, efi_ova, tmp_path, f"{PROFILE}-20261201-010000-abc1234", None)
    new = _publish(simulator, efi_ova, tmp_path, f"{PROFILE}-20261202-010000-abc1234", None)
    with session(simulator.connection) as si:
        result = apply_retention(si, "DC0", PROFILE, 1, {new.template}, None)
    assert result.deleted == []
    assert "set ovapipe.pipeline_id in invoke.yaml" in result.message()
    assert first.template != new.template


def test_the_site_pipeline_id_comes_from_invoke_yaml() -> None:
    from ovapipe.config import site_defaults

    assert site_defaults({"pipeline_id": "gpu-site-1"}, {}).pipeline_id == "gpu-site-1"
    assert site_defaults({}, {}).pipeline_id is None
    assert replace(site_defaults({}, {}), pipeline_id="x").pipeline_id == "x"


@pytest.mark.simulator
@pytest.mark.slow
def test_library_retention_deletes_only_its_own_old_items(
    simulator: Any, efi_ova: Path, tmp_path: Path
) -> None:
    """Items of this site and profile beyond keep go; another site's, a foreign item and
    one being uploaded stay."""
    from ovapipe.progress import Progress
    from ovapipe.retention import apply_library_retention
    from ovapipe.vsphere.library import content
    from ovapipe.vsphere.library.rest import rest_session
    from ovapipe.vsphere.ownership import new_marker, with_marker
    from ovapipe.vsphere.publish import PublishOptions, publish

    def via_library(name: str, pipeline: str) -> None:
        opts = PublishOptions(ova=efi_ova, datacenters=("DC0",), cluster="DC0_C0",
                              datastore="LocalDS_0", network="VM Network",
                              output_dir=tmp_path, name=name, pipeline_id=pipeline,
                              library="L", snapshot=False,
                              facts={"nightly.profile": PROFILE, "nightly.build_id": name})
        publish(opts, simulator.connection, log=io.StringIO(),
                progress=lambda label, total: Progress(label, total, io.StringIO(), tty=False))

    stamp = lambda day: f"{PROFILE}-202611{day:02d}-010000-abc1234"  # noqa: E731
    for day in (20, 21):
        via_library(stamp(day), "site-a")
    via_library(stamp(22), "team-b")
    via_library(stamp(28), "site-a")
    with rest_session(simulator.connection) as api:
        [library] = content.find_libraries(api, "L")
        content.create_item(api, library.id, "someone-elses", "not ovapipe's")
        busy = with_marker(f"ovapipe.pipeline_id: site-a\novapipe.ova_sha256: {'0' * 64}\n",
                           new_marker(stamp(19)))
        content.create_item(api, library.id, stamp(19), busy)
        result = apply_library_retention(api, "L", PROFILE, 1, {stamp(28)}, "site-a")
        left = sorted(item.name for item in content.list_items(api, library.id))
    assert sorted(result.deleted) == [f"L/{stamp(20)}", f"L/{stamp(21)}"], result.message()
    assert left == sorted([stamp(19), stamp(22), stamp(28), "someone-elses"])
