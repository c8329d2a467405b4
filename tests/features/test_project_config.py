"""The project config (lifecycle.yaml) and the user-shaped tables it describes."""

from __future__ import annotations

import pandas as pd
import pytest

from features.contracts import ContractError
from features.loaders import load_mapped
from features.project import ProjectConfig, load_project_config
from training.data import load_tables

YAML = """
data:
  events:
    path: orders.txt
    format: whitespace
    columns: {customer_id: cust, timestamp: day, amount: total}
    constants: {event_type: purchase}
  deduplicate: false
roles:
  mapping: {premium_renewed: purchase}
dataset:
  churn_definition: rhythm
  churn_horizon_days: 273
  population: all
  stages: {rhythm_churned_multiple: 4}
  first_as_of: 2024-03-01
seed: 3
"""


def test_config_reads_every_section(tmp_path):
    path = tmp_path / "lifecycle.yaml"
    path.write_text(YAML)
    config = ProjectConfig.from_yaml(path)
    assert config.data.events.columns == {"customer_id": "cust", "timestamp": "day",
                                          "amount": "total"}  # fmt: skip
    assert config.data.deduplicate is False
    assert config.role_map().role_of("Premium_Renewed") == "purchase"
    assert config.role_map().role_of("purchase") == "purchase"  # defaults kept
    assert config.dataset.churn_horizon_days == 273
    assert config.dataset.stages.rhythm_churned_multiple == 4
    assert str(config.dataset.first_as_of) == "2024-03-01"


def test_unknown_keys_and_bad_values_name_the_file_and_field(tmp_path):
    path = tmp_path / "lifecycle.yaml"
    path.write_text("dataset:\n  churn_horizon: 90\n")
    with pytest.raises(ValueError, match=r"lifecycle.yaml.*dataset\.churn_horizon.*Extra"):
        ProjectConfig.from_yaml(path)
    path.write_text("roles:\n  mapping: {app_open: nonsense}\n")
    with pytest.raises(ValueError, match=r"roles\.mapping\.app_open.*nonsense"):
        ProjectConfig.from_yaml(path)
    path.write_text("dataset:\n  first_as_of: 2025-05-01\n  last_as_of: 2025-01-01\n")
    with pytest.raises(ValueError, match="first_as_of .* must not be after last_as_of"):
        ProjectConfig.from_yaml(path)


def test_config_lookup_order(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.delenv("LIFECYCLE_CONFIG", raising=False)
    assert load_project_config(None, data) == ProjectConfig()
    (data / "lifecycle.yaml").write_text("seed: 1\n")
    assert load_project_config(None, data).seed == 1
    other = tmp_path / "other.yaml"
    other.write_text("seed: 2\n")
    monkeypatch.setenv("LIFECYCLE_CONFIG", str(other))
    assert load_project_config(None, data).seed == 2
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("seed: 3\n")
    assert load_project_config(explicit, data).seed == 3
    with pytest.raises(FileNotFoundError, match="absent.yaml .--config. does not exist"):
        load_project_config(tmp_path / "absent.yaml")


def test_a_whitespace_log_with_integer_dates_loads_through_the_config(tmp_path):
    (tmp_path / "orders.txt").write_text(
        "cust day     total\nA    20250101 10.5\nA    20250101 10.5\nB    20250301 3\n"
    )
    (tmp_path / "lifecycle.yaml").write_text(YAML)
    tables = load_tables(tmp_path, config=load_project_config(None, tmp_path))
    ev = tables.events
    assert len(ev) == 3  # the genuine repeat is kept: deduplicate is off
    assert ev["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2025-01-01"] * 2 + ["2025-03-01"]
    assert ev["role"].astype(str).unique().tolist() == ["purchase"]
    assert ev["amount"].tolist() == [10.5, 10.5, 3.0]


@pytest.mark.parametrize(("suffix", "sep"), [(".tsv", "\t"), (".csv", ","), (".parquet", None)])
def test_formats_and_integer_dates(tmp_path, suffix, sep):
    frame = pd.DataFrame({"who": ["a", "b"], "d": [20250102, 20251231], "v": [1.0, 2.0]})
    path = tmp_path / f"t{suffix}"
    if sep is None:
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep=sep, index=False)
    result = load_mapped("events", path, columns={"customer_id": "who", "timestamp": "d",
                                                  "amount": "v"},
                         constants={"event_type": "purchase"})  # fmt: skip
    assert result.data["timestamp"].dt.strftime("%Y%m%d").tolist() == ["20250102", "20251231"]


def test_a_date_format_names_the_bad_value(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("who,d,v\na,02/01/2025,1\nb,31/13/2025,2\n")
    with pytest.raises(ContractError) as err:
        load_mapped("events", path, columns={"customer_id": "who", "timestamp": "d",
                                             "amount": "v"},
                    constants={"event_type": "purchase"}, time_format="%d/%m/%Y")  # fmt: skip
    text = str(err.value)
    assert "events.timestamp (column 'd') must be a timestamp in the format '%d/%m/%Y'" in text
    assert "'31/13/2025'" in text


def test_mapping_errors_name_the_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("who,d,v,event_type\na,20250101,1,x\n")
    with pytest.raises(ContractError, match=r"missing required column.*nope \(for customer_id\)"):
        load_mapped("events", path, columns={"customer_id": "nope", "timestamp": "d"})
    with pytest.raises(ContractError, match="already has column.*event_type"):
        load_mapped("events", path, columns={"customer_id": "who", "timestamp": "d"},
                    constants={"event_type": "purchase"})  # fmt: skip


def test_subscriptions_and_labels_tables_have_contracts():
    subs = pd.DataFrame({"customer_id": ["a", "b"], "period_start": ["2025-01-01"] * 2,
                         "period_end": ["2025-02-01", "2024-12-01"],
                         "recurring_value": [9.0, 9.0], "discount": [0.0, 1.5]})  # fmt: skip
    with pytest.raises(ContractError) as err:
        load_mapped("subscriptions", subs)
    assert "subscriptions.period_end must be after period_start" in str(err.value)
    assert "subscriptions.discount must be in [0, 1]" in str(err.value)
    labels = pd.DataFrame({"customer_id": ["a", "a"], "as_of": ["2025-01-01"] * 2,
                           "label": [1, 2]})  # fmt: skip
    result = load_mapped("labels", labels, mode="lenient")
    assert result.report.rows_quarantined == 2
    reasons = " ".join(result.report.reasons)
    assert "labels.label must be 0 or 1" in reasons
    assert "labels.customer_id must have one label per as_of" in reasons


def test_the_documented_config_is_the_default():
    from pathlib import Path

    documented = Path(__file__).parents[2] / "docs" / "lifecycle.yaml"
    assert ProjectConfig.from_yaml(documented) == ProjectConfig()
    import yaml
    from pydantic import BaseModel

    def undocumented(model: type[BaseModel], written: dict, prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            if name not in written:
                out.append(prefix + name)
            elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                out += undocumented(field.annotation, written[name], f"{prefix}{name}.")
        return out

    assert undocumented(ProjectConfig, yaml.safe_load(documented.read_text())) == []
