"""The federation's parts without a federation: site roots, the run config, certificates, messages."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pandas as pd
import pytest
import torch

from ddval import store
from ddval.federation import protocol
from ddval.federation.certs import make_node_keys, make_server_certificates
from ddval.federation.job import Job
from ddval.federation.sites import PARTITION_FILE, SITE_FILE, SITE_FORMAT, load_site

PRESET = str(Path(__file__).with_name("tiny.yaml"))


def write_site(root: Path, institutions: list[str]) -> Path:
    (root / "scans").mkdir(parents=True)
    rows = pd.DataFrame(
        {
            "institution": institutions,
            "split": ["train"] * len(institutions),
            "path": [f"scans/{i}.png" for i in range(len(institutions))],
        }
    )
    store.write_table(root / PARTITION_FILE, rows)
    store.write_json(
        root / SITE_FILE, {"format": SITE_FORMAT, "institution": "nih", "preset": "tiny", "seed": 0, "setting": "trio"}
    )
    return root


def test_a_site_root_holds_only_its_own_rows(tmp_path):
    site = load_site(write_site(tmp_path / "ok", ["nih", "nih"]))
    assert site.institution == "nih" and all(Path(p).is_relative_to(site.root) for p in site.rows["path"])
    with pytest.raises(ValueError, match=r"partition.parquet: rows of other institutions \['mimic'\]"):
        load_site(write_site(tmp_path / "mixed", ["nih", "mimic"]))
    with pytest.raises(FileNotFoundError, match="site.json: not found"):
        load_site(tmp_path / "empty")


def test_run_config_errors_name_the_key():
    job = Job.from_run_config({"preset": PRESET, "setting": "trio"})
    assert job.institutions == ["nih", "chexpert", "mimic"] and job.round_timeout == 600.0
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['rounds'\]"):
        Job.from_run_config({"preset": PRESET, "setting": "trio", "rounds": 3})
    with pytest.raises(ValueError, match="round-timeout must be >= 0"):
        Job.from_run_config({"preset": PRESET, "setting": "trio", "round-timeout": -1.0})


def test_states_cross_the_wire_bit_identical():
    state = {
        "w": torch.randn(3, 2, dtype=torch.float32),
        "n": torch.tensor(7, dtype=torch.int64),
        "h": torch.randn(4, dtype=torch.float16),
    }
    back = protocol.arrays_to_state(protocol.state_to_arrays(state))
    assert list(back) == list(state)
    for key in state:
        assert back[key].dtype == state[key].dtype and torch.equal(back[key], state[key])


def test_local_ca_signs_a_certificate_for_loopback(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key

    certs = make_server_certificates(tmp_path)
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(certs.server_cert.read_bytes())
    ca.public_key().verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm))
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    private, public = make_node_keys(tmp_path / "keys", "nih")
    assert isinstance(load_ssh_private_key(private.read_bytes(), None), ec.EllipticCurvePrivateKey)
    assert public.read_text().startswith("ecdsa-sha2-nistp384 ") and oct(private.stat().st_mode)[-3:] == "600"
