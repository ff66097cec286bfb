"""Registered datasets: each one's spec and reference table in the store, its expectation suite in
the GX project.

The spec and reference are kept at ``datasets/<name>/{spec.yaml,reference.parquet}`` in the store
(:mod:`mlops_core.adapters.store`: under ``MLOPS_HOME`` by default, ``s3://...`` when
``MLOPS_STORE_URL`` says so), so every worker of a cluster sees the same registrations.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from mlops_core.adapters.store import Store, open_store
from mlops_core.data import read_table
from mlops_core.errors import SpecError, UnknownDatasetError, UnusableInputError
from mlops_core.settings import Settings
from mlops_core.spec import DatasetSpec, check_dataset_name

# Specs parsed once per process and file version: every flow run and command looks its dataset up.
_SPECS: dict[tuple[str, int, int], DatasetSpec] = {}


def _cached_spec(path: Path) -> DatasetSpec:
    """The spec in ``path``, parsed again only when the file changed."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _SPECS:
        if len(_SPECS) >= 64:
            _SPECS.pop(next(iter(_SPECS)))
        _SPECS[key] = DatasetSpec.from_yaml(path)
    return _SPECS[key]


@dataclass(frozen=True)
class RegisteredDataset:
    """A dataset the installation knows: where its spec, reference and suite live."""

    spec: DatasetSpec
    spec_path: Path  # on this machine: the file itself, or a cached copy of the stored one
    reference_path: Path
    suite_path: Path

    @property
    def name(self) -> str:
        """The dataset's name, from its spec."""
        return self.spec.name

    def reference(self) -> pl.DataFrame:
        """The stored reference table, read in full."""
        return pl.read_parquet(self.reference_path)


class DatasetCatalog:
    """Adds and finds datasets: ``datasets/<name>/{spec.yaml,reference.parquet}`` in the store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store = open_store(settings)

    def folder(self, name: str) -> str:
        """The store folder of dataset ``name``; a ``BadNameError`` when the name is unsafe."""
        return f"datasets/{check_dataset_name(name)}"

    def names(self) -> list[str]:
        """The registered datasets' names, sorted."""
        return sorted(
            key.split("/")[1]
            for key in self.store.list("datasets")
            if key.count("/") == 2 and key.endswith("/spec.yaml")
        )

    def get(self, name: str) -> RegisteredDataset:
        """The registered dataset ``name``, or ``UnknownDatasetError`` listing the known ones."""
        from mlops_core.adapters.gx_project import suite_path

        folder = self.folder(name)
        try:
            spec_path = self.store.local_path(self.store.location(f"{folder}/spec.yaml"))
            if not spec_path.is_file():
                raise FileNotFoundError(spec_path)
        except FileNotFoundError:
            known = ", ".join(self.names()) or "none yet"
            raise UnknownDatasetError(
                f"dataset {name!r} is not registered (registered: {known})",
                hint="register it with `mlops dataset add SPEC.yaml --reference FILE`",
            ) from None
        return RegisteredDataset(
            spec=_cached_spec(spec_path),
            spec_path=spec_path,
            reference_path=self.store.local_path(
                self.store.location(f"{folder}/reference.parquet")
            ),
            suite_path=suite_path(self.settings, name),
        )

    def read_reference(self, path: Path) -> pl.DataFrame:
        """A reference table read in full; an unreadable one is a ``SpecError`` naming the file."""
        try:
            return read_table(path, max_bytes=self.settings.max_batch_bytes)
        except UnusableInputError as exc:
            raise SpecError(f"reference {exc}") from None

    def add(self, spec: DatasetSpec, reference_file: Path) -> RegisteredDataset:
        """Register ``spec`` with its reference: store both and build the expectation suite."""
        from mlops_core.adapters.gx_project import save_suite
        from mlops_core.validation import build_suite, check_reference

        check_dataset_name(spec.name)  # before reading anything: a spec built in code is unchecked
        reference = self.read_reference(Path(reference_file))
        check_reference(spec, reference, source=f"reference {reference_file}")
        suite = build_suite(spec, reference, self.settings)
        folder = self.folder(spec.name)
        buffer = io.BytesIO()
        reference.write_parquet(buffer)
        self.store.put_bytes(f"{folder}/reference.parquet", buffer.getvalue())
        save_suite(suite, self.settings)
        # Written last: the spec marks the dataset as complete.
        self.store.put_bytes(f"{folder}/spec.yaml", spec.to_yaml().encode("utf-8"))
        return self.get(spec.name)

    def resolve(
        self, dataset: str | None, spec_file: Path | None, reference_file: Path | None
    ) -> RegisteredDataset:
        """The dataset a command means: ``--dataset NAME``, or ``--spec FILE`` (+ ``--reference``).

        A spec whose dataset is not registered yet is registered here, which needs its reference.
        """
        if (dataset is None) == (spec_file is None):
            raise SpecError("give exactly one of --dataset NAME or --spec FILE")
        if dataset is not None:
            return self.get(dataset)
        assert spec_file is not None
        spec = DatasetSpec.from_yaml(spec_file)
        if spec.name in self.names():
            registered = self.get(spec.name)
            if registered.spec != spec:
                raise SpecError(
                    f"spec {spec_file} differs from the registered dataset {spec.name!r}",
                    hint="use --dataset to use the registered one, or rename the dataset in the spec",
                )
            if reference_file is None:
                return registered
        if reference_file is None:
            raise SpecError(
                f"dataset {spec.name!r} from {spec_file} is not registered, so --reference FILE is needed",
                hint="pass the reference table it should be checked against",
            )
        return self.add(spec, reference_file)
