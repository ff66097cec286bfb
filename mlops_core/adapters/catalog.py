"""Registered datasets: each one's spec, reference table and expectation suite under ``MLOPS_HOME``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

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
    spec_path: Path
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
    """Adds and finds datasets: ``<home>/datasets/<name>/{spec.yaml,reference.parquet}``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def folder(self, name: str) -> Path:
        """Where dataset ``name`` is stored; a ``BadNameError`` when the name is unsafe."""
        return self.settings.datasets_dir / check_dataset_name(name)

    def names(self) -> list[str]:
        """The registered datasets' names, sorted."""
        root = self.settings.datasets_dir
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "spec.yaml").is_file())

    def get(self, name: str) -> RegisteredDataset:
        """The registered dataset ``name``, or ``UnknownDatasetError`` listing the known ones."""
        from mlops_core.adapters.gx_project import suite_path

        folder = self.folder(name)
        spec_path = folder / "spec.yaml"
        if not spec_path.is_file():
            known = ", ".join(self.names()) or "none yet"
            raise UnknownDatasetError(
                f"dataset {name!r} is not registered (registered: {known})",
                hint="register it with `mlops dataset add SPEC.yaml --reference FILE`",
            )
        return RegisteredDataset(
            spec=_cached_spec(spec_path),
            spec_path=spec_path,
            reference_path=folder / "reference.parquet",
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
        folder.mkdir(parents=True, exist_ok=True)
        staged = folder / ".reference.parquet.tmp"
        reference.write_parquet(staged)
        staged.replace(folder / "reference.parquet")
        suite_file = save_suite(suite, self.settings)
        spec_staged = folder / ".spec.yaml.tmp"
        spec_staged.write_text(spec.to_yaml(), encoding="utf-8")
        spec_staged.replace(folder / "spec.yaml")  # written last: it marks the dataset as complete
        return RegisteredDataset(
            spec=spec,
            spec_path=folder / "spec.yaml",
            reference_path=folder / "reference.parquet",
            suite_path=suite_file,
        )

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
