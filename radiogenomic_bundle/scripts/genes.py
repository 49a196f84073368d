"""GEO-style gene-expression tables: tab-separated, first row = patient IDs, one row per gene, "NA" = missing."""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan_core.errors import BundleInputError

MISSING = {"", "NA", "NaN", "nan", "N/A", "null"}


@dataclass
class GeneTable:
    """A gene table.

    Attributes:
        patient_ids: one per column.
        gene_names: one per row.
        values: (n_genes, n_patients) float64 expression values, NaN where the table says "NA".
    """

    patient_ids: list[str]
    gene_names: list[str]
    values: np.ndarray

    def complete_genes(self) -> GeneTable:
        """The genes with no missing value for any of this table's patients (as the paper keeps 5172)."""
        keep = ~np.isnan(self.values).any(axis=1)
        return GeneTable(list(self.patient_ids), [g for g, k in zip(self.gene_names, keep, strict=True) if k],
                         self.values[keep])

    def subset(self, patient_ids: list[str]) -> GeneTable:
        """The columns of ``patient_ids``, in that order (each must be in the table)."""
        index = {p: i for i, p in enumerate(self.patient_ids)}
        missing = [p for p in patient_ids if p not in index]
        if missing:
            raise BundleInputError(f"{len(missing)} profile(s) not in the gene table, e.g. {missing[:3]}",
                                   field="gene_profiles", hint=f"choose columns of the table, e.g. {self.patient_ids[:3]}")
        return GeneTable(list(patient_ids), list(self.gene_names), self.values[:, [index[p] for p in patient_ids]])


def read_gene_table(path) -> GeneTable:
    """Read a tab-separated gene table (``.gz`` allowed).

    The first row holds the patient IDs, optionally after a corner cell naming the gene column (a header one
    field shorter than the data rows, as R's ``write.table`` writes it, is read the same). Each further row is a
    gene name then one value per patient; "NA" (or an empty cell) means missing.

    Raises:
        BundleInputError: missing or empty file, ragged rows, duplicate patients or genes, non-numeric values
            (the file, the line and the column named).
    """
    path = Path(path)
    if not path.is_file():
        raise BundleInputError("gene table not found", path=path, hint="give the GEO RNA-seq table (.txt/.tsv[.gz])")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as err:
        raise BundleInputError(f"unreadable gene table ({type(err).__name__}: {err})", path=path,
                               hint="the file is damaged or not a text table: download or export it again") from err
    if len(lines) < 2:
        raise BundleInputError("the gene table has no gene rows", path=path,
                               hint='give a table with a header row of patient IDs and one row per gene')
    header = lines[0].split("\t")
    width = len(lines[1].split("\t"))
    if len(header) == width:
        header = header[1:]
    elif len(header) != width - 1:
        raise BundleInputError(
            f"the header has {len(header)} fields but line 2 has {width}", path=path, field="line 1",
            hint="the first row must list the patient IDs, tab-separated",
        )
    patient_ids = [p.strip() for p in header]
    seen = set()
    for p in patient_ids:
        if not p or p in seen:
            raise BundleInputError(f"empty or duplicate patient ID {p!r} in the header", path=path, field="line 1",
                                   hint='give each patient column a unique, non-empty ID')
        seen.add(p)

    gene_names = []
    values = np.empty((len(lines) - 1, len(patient_ids)), dtype=np.float64)
    for row, line in enumerate(lines[1:]):
        cells = line.split("\t")
        if len(cells) != width:
            raise BundleInputError(
                f"line has {len(cells)} fields, expected {width}", path=path, field=f"line {row + 2}",
                hint='every row needs a gene name and one value per patient, tab-separated')
        gene_names.append(cells[0].strip())
        for col, cell in enumerate(cells[1:]):
            cell = cell.strip()
            if cell in MISSING:
                values[row, col] = np.nan
                continue
            try:
                values[row, col] = float(cell)
            except ValueError as err:
                raise BundleInputError(
                    f"value {cell!r} of patient {patient_ids[col]} is not a number",
                    path=path,
                    field=f"line {row + 2}, column {col + 2}",
                    hint='write missing values as "NA"',
                ) from err
    if len(set(gene_names)) != len(gene_names):
        duplicates = sorted(g for g, n in Counter(gene_names).items() if n > 1)[:5]
        raise BundleInputError(f"duplicate gene names, e.g. {duplicates}", path=path, field="gene column",
                               hint='keep one row per gene (merge or drop the duplicates)')
    return GeneTable(patient_ids=patient_ids, gene_names=gene_names, values=values)
