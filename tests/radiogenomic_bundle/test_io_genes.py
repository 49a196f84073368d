"""scripts.genes: GEO-style table reading, NA handling and each malformed-table error."""

import gzip

import numpy as np
import pytest
from scripts.genes import read_gene_table

from gan_core.errors import BundleInputError

TABLE = "gene\tR01-001\tR01-002\tR01-003\nTP53\t1.5\t2\tNA\nEGFR\t0.25\t-1\t3\nKRAS\t\t4\t5\n"


def test_read_with_corner_cell_and_na(tmp_path):
    (tmp_path / "g.tsv").write_text(TABLE)
    table = read_gene_table(tmp_path / "g.tsv")
    assert table.patient_ids == ["R01-001", "R01-002", "R01-003"]
    assert table.gene_names == ["TP53", "EGFR", "KRAS"]
    assert table.values.shape == (3, 3) and table.values.dtype == np.float64
    assert np.isnan(table.values[0, 2]) and np.isnan(table.values[2, 0]) and table.values[1, 0] == 0.25
    complete = table.complete_genes()
    assert complete.gene_names == ["EGFR"] and complete.values.shape == (1, 3)
    sub = table.subset(["R01-003", "R01-001"])
    assert sub.values[1, 0] == 3.0 and sub.patient_ids == ["R01-003", "R01-001"]


def test_header_without_corner_cell_and_gzip(tmp_path):
    text = TABLE.split("\n", 1)[1]
    with gzip.open(tmp_path / "g.txt.gz", "wt") as f:
        f.write("R01-001\tR01-002\tR01-003\n" + text)
    table = read_gene_table(tmp_path / "g.txt.gz")
    assert table.patient_ids == ["R01-001", "R01-002", "R01-003"] and len(table.gene_names) == 3


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("gene\tA\tB\nTP53\t1\tx\n", "line 2, column 3"),
        ("gene\tA\tB\nTP53\t1\t2\nEGFR\t1\n", "line 3"),
        ("gene\tA\tA\nTP53\t1\t2\n", "line 1"),
        ("gene\tA\tB\nTP53\t1\t2\nTP53\t1\t2\n", "gene column"),
        ("gene\tA\tB\n", None),
    ],
)
def test_malformed_tables(tmp_path, text, field):
    (tmp_path / "g.tsv").write_text(text)
    with pytest.raises(BundleInputError) as err:
        read_gene_table(tmp_path / "g.tsv")
    assert err.value.path == str(tmp_path / "g.tsv") and err.value.field == field


def test_missing_file(tmp_path):
    with pytest.raises(BundleInputError):
        read_gene_table(tmp_path / "none.tsv")
