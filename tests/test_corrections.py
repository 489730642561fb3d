"""data.corrections: label fixes applied by prepare_labels after the split, counted in data.json; a bad
corrections file is a one-line error naming the file and row."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import replace
from twohead.data.io import DataError
from twohead.data.labels import prepare


@pytest.fixture()
def raw(tmp_path):
    rows = [{"id": f"r{i}", "text": f"article number {i} about {c}", "pick": "Pick" if c else "Decline",
             "category": c} for i, c in enumerate(["A", "B", "C"] * 20 + [""] * 12)]
    path = tmp_path / "raw.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _prepare(raw, corrections_rows, tmp_path):
    from conftest import make_params

    corr = tmp_path / "corrections.csv"
    pd.DataFrame(corrections_rows, columns=["id", "category", "pick", "drop"]).to_csv(corr, index=False)
    p = make_params(data={"raw_path": str(raw), "corrections": str(corr)})
    return prepare(p.data, p.split), p


def _all(prep) -> pd.DataFrame:
    return pd.concat([df.assign(split=s) for s, df in prep.splits.items()]).set_index("id")


def test_corrections_relabel_drop_and_keep_every_row_in_its_split(raw, tmp_path):
    base, _ = _prepare(raw, [], tmp_path)
    fixed, _ = _prepare(raw, [["r0", "B", "", ""], ["r1", "", "Decline", ""], ["r2", "", "", "true"],
                              ["r60", "C", "Pick", ""], ["r3", "A", "", ""]], tmp_path)
    a, b = _all(base), _all(fixed)
    assert "r2" not in b.index and len(b) == len(a) - 1
    assert b.loc["r0", "category"] == "B" and b.loc["r1", "labels_task1"] == 0
    assert b.loc["r1", "labels_task2"] == -100 and pd.isna(b.loc["r1", "category"])
    assert b.loc["r60", "labels_task1"] == 1 and b.loc["r60", "category"] == "C"
    assert (b["split"] == a.loc[b.index, "split"]).all()          # the split is drawn before the corrections
    assert fixed.corrections == {"file": str(tmp_path / "corrections.csv"), "rows": 5, "category_changed": 2,
                                 "pick_changed": 2, "dropped": 1, "unchanged": 1,
                                 "by_split": fixed.corrections["by_split"], "categories_removed": []}
    assert sum(fixed.corrections["by_split"].values()) == 5
    assert base.corrections["rows"] == 0


@pytest.mark.parametrize("row, message", [
    (["nope", "A", "", ""], "row 0 \\(id 'nope'\\): no row of .*raw.csv has this id"),
    (["r0", "Sports", "", ""], "category 'Sports' is not one of the data's 3 categories"),
    (["r60", "A", "", ""], "gives category 'A' to a Decline row; set pick to Pick"),
    (["r0", "", "maybe", ""], "pick 'maybe' is neither a Pick value"),
    (["r0", "", "", "perhaps"], "drop must be true or false"),
])
def test_a_bad_correction_is_one_line_naming_the_file_and_row(raw, tmp_path, row, message):
    with pytest.raises(DataError, match=message) as e:
        _prepare(raw, [row], tmp_path)
    assert "corrections.csv: row 0" in str(e.value) and "\n" not in str(e.value)


def test_a_corrections_file_of_the_wrong_shape_is_refused(raw, tmp_path):
    from conftest import make_params

    corr = tmp_path / "c.csv"
    corr.write_text("id,label\nr0,A\n")
    p = make_params(data={"raw_path": str(raw), "corrections": str(corr)})
    with pytest.raises(DataError, match="unknown column\\(s\\): 'label'"):
        prepare(p.data, p.split)
    corr.write_text("id,category\nr0,A\nr0,B\n")
    with pytest.raises(DataError, match="id 'r0' is corrected twice"):
        prepare(p.data, p.split)
    p = replace(p, "data", corrections=str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="missing.csv: corrections file \\(data.corrections\\) not found"):
        prepare(p.data, p.split)
    (tmp_path / "fixes").mkdir()   # it exists, but it is a folder: say so, not "not found"
    p = replace(p, "data", corrections=str(tmp_path / "fixes"))
    with pytest.raises(DataError, match="fixes: is a directory; the corrections file \\(data.corrections\\) must"):
        prepare(p.data, p.split)


def test_empty_corrections_path_is_refused_naming_the_key(tmp_path):
    """DVC cannot depend on an empty path (every dvc command failed with 'unexpected error'): the params file is
    refused first, by validate_params and twohead check."""
    import yaml

    from conftest import committed_text
    from twohead.config.params import ParamsError, load_params

    raw = yaml.safe_load(committed_text("params.yaml"))
    raw["data"]["corrections"] = ""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="data.corrections is empty, and dvc.yaml depends on that path"):
        load_params(tmp_path / "params.yaml")


def test_a_corrections_file_of_unknown_format_gets_its_own_hint(raw, tmp_path):
    """data.format is the raw table's: an error about the corrections file must not send the user there."""
    from conftest import make_params

    odd = tmp_path / "passwd"
    odd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    p = make_params(data={"raw_path": str(raw), "corrections": str(odd)})
    with pytest.raises(DataError) as e:
        prepare(p.data, p.split)
    assert "name the corrections file *.csv" in str(e.value) and "data.format" not in str(e.value)


def test_a_class_the_corrections_remove_is_named_and_counted(raw, tmp_path):
    every_c = [[f"r{i}", "A", "", ""] for i in range(2, 60, 3)]     # every C row relabelled A
    prep, _ = _prepare(raw, every_c, tmp_path)
    assert prep.categories == ["A", "B"] and prep.corrections["categories_removed"] == ["C"]
    assert any("no row of category 'C'" in w and "(3 → 2 categories)" in w for w in prep.warnings)


def test_corrections_that_empty_train_of_decline_or_a_class_name_the_file_and_rows(raw, tmp_path):
    base = _all(_prepare(raw, [], tmp_path)[0])
    train = base[base["split"] == "train"]
    declines = [[i, "", "", "true"] for i in train.index[train["labels_task1"] == 0]]
    with pytest.raises(DataError) as e:
        _prepare(raw, declines, tmp_path)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "corrections.csv")) and "train split has no Decline row" in msg
    assert f"row 0 (id {declines[0][0]!r})" in msg and "raw.csv" not in msg
    train_c = [[i, "A", "", ""] for i in train.index[train["category"] == "C"]]
    with pytest.raises(DataError, match=r"no train row has category 'C' \(val/test still do\) — the corrections in"
                                        r" .*corrections.csv did it: row 0"):
        _prepare(raw, train_c, tmp_path)


def test_a_bad_first_row_stops_the_read_there(raw, tmp_path):
    """A corrections file is streamed: an unknown id in row 0 fails before the rest is read (a 50 MB file used to
    be read and cleaned whole first: minutes). Here the rest is not even valid JSON Lines past the first chunk."""
    import json

    from conftest import make_params
    from twohead.data.stream import CHUNK_ROWS

    corr = tmp_path / "fixes.jsonl"
    with open(corr, "w") as f:
        f.write(json.dumps({"id": "nope", "category": "A"}) + "\n")
        for i in range(CHUNK_ROWS + 10):
            f.write(json.dumps({"id": f"x{i}", "category": "A"}) + "\n")
        f.write("{ not json\n")
    p = make_params(data={"raw_path": str(raw), "corrections": str(corr)})
    with pytest.raises(DataError, match=r"fixes.jsonl: row 0 \(id 'nope'\): no row of .*raw.csv has this id"):
        prepare(p.data, p.split)


def test_ids_are_checked_across_chunks(raw, tmp_path):
    from twohead.data.corrections import read_corrections

    corr = tmp_path / "c.csv"
    pd.DataFrame({"id": ["r0", "r1", "r2", "r1"], "category": ["A", "B", "C", "A"]}).to_csv(corr, index=False)
    chunks = read_corrections(str(corr), chunk_rows=2)
    first = next(chunks)
    assert list(first["id"]) == ["r0", "r1"] and list(first["row"]) == [0, 1] and list(first["drop"]) == ["", ""]
    with pytest.raises(DataError, match="row 3: id 'r1' is corrected twice"):
        next(chunks)
