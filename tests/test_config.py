import pytest

from ovapipe.config import connection_from_env, normalize_thumbprint, split_server
from ovapipe.errors import ConfigError

PIN = "AB:" * 19 + "CD"
BASE = {"VSPHERE_SERVER": "vc.example.com", "VSPHERE_USERNAME": "u", "VSPHERE_PASSWORD": "s3cret",
        "VSPHERE_TLS_THUMBPRINT": PIN.lower().replace(":", "")}


def test_reads_capv_names_and_normalizes_the_pin():
    conn = connection_from_env(BASE, prompt=False)
    assert (conn.host, conn.port, conn.username) == ("vc.example.com", 443, "u")
    assert conn.thumbprint == PIN
    assert "s3cret" not in repr(conn)


@pytest.mark.parametrize(
    ("server", "expected"),
    [("vc:8989", ("vc", 8989)), ("https://vc.example.com/sdk", ("vc.example.com", 443)),
     ("[::1]:8443", ("::1", 8443)), ("127.0.0.1", ("127.0.0.1", 443))],
)
def test_split_server(server, expected):
    assert split_server(server) == expected


@pytest.mark.parametrize("server", ["vc:http", "vc:0", "vc:70000", ""])
def test_split_server_rejects(server):
    with pytest.raises(ConfigError, match="VSPHERE_SERVER"):
        split_server(server)


def test_missing_server_names_the_variables():
    with pytest.raises(ConfigError, match="VSPHERE_SERVER and VSPHERE_USERNAME not set"):
        connection_from_env({}, prompt=False)


def test_missing_password_without_terminal():
    env = {k: v for k, v in BASE.items() if k != "VSPHERE_PASSWORD"}
    with pytest.raises(ConfigError, match="VSPHERE_PASSWORD not set"):
        connection_from_env(env, prompt=False)


def test_no_pin_requires_insecure():
    env = {k: v for k, v in BASE.items() if k != "VSPHERE_TLS_THUMBPRINT"}
    with pytest.raises(ConfigError, match="VSPHERE_TLS_THUMBPRINT not set"):
        connection_from_env(env, prompt=False)
    assert connection_from_env(env, insecure=True, prompt=False).insecure


@pytest.mark.parametrize("bad", ["xyz", "AB:CD", "G" * 40])
def test_bad_thumbprint(bad):
    with pytest.raises(ConfigError, match="SHA-1"):
        normalize_thumbprint(bad)


def test_site_defaults_prefer_invoke_yaml_then_capv_variables():
    from pathlib import Path

    from ovapipe.config import site_defaults

    env = {"VSPHERE_DATACENTER": "dc-env", "VSPHERE_DATASTORE": "ds-env",
           "VSPHERE_CLUSTER": "c-env"}
    site = site_defaults({"datastore": "ds-yaml", "output": "out", "network": None}, env)
    assert (site.datacenter, site.datastore, site.cluster) == ("dc-env", "ds-yaml", "c-env")
    assert site.network is None and site.output == Path("out")
    assert site.publish_concurrency == 2


def test_site_defaults_reject_a_bad_concurrency():
    from ovapipe.config import site_defaults

    with pytest.raises(ConfigError, match="publish_concurrency"):
        site_defaults({"publish_concurrency": "many"}, {})


def test_insecure_is_read_alike_by_ovapipe_and_for_packer():
    from ovapipe.varfiles import env_layer

    for word, expected in (("on", True), ("YES", True), ("0", False), ("off", False)):
        env = {**BASE, "VSPHERE_INSECURE": word}
        assert connection_from_env(env, prompt=False).insecure is expected
        assert env_layer(env).values["insecure_connection"] is expected
    with pytest.raises(ConfigError, match="VSPHERE_INSECURE='maybe': expected true or false"):
        connection_from_env({**BASE, "VSPHERE_INSECURE": "maybe"}, prompt=False)
    with pytest.raises(ConfigError, match="VSPHERE_INSECURE='maybe': expected true or false"):
        env_layer({"VSPHERE_INSECURE": "maybe"})
