"""The files shipped inside the package: the seed's studies and the synthetic example.

A wheel carries the repository's studies/*.toml as ``sweep/studies/`` and
examples/synthetic/ as ``sweep/examples/synthetic/`` (pyproject.toml maps them into the
package from their fixed places), read here through importlib.resources; a source checkout
(or an editable install) reads the same files where they are. `sweep reproduce` runs the
seed's studies from here, so it works from any folder; `sweep init DIR` copies them out.

The example is the synthetic one, not the softmax one: it runs in seconds without
CIFAR-10 (no 170 MB download before a first try), has a known optimum to check the result
against, and shows the list form of a function (``objective_many``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from sweep.errors import SweepError
from sweep.system.portable import shell_join

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, when run from one

# (folder inside the package, the same folder in the repository, where `sweep init` puts it)
SHIPPED = {
    "studies": (("studies",), "studies"),
    "example": (("examples", "synthetic"), "examples/synthetic"),
}


def folder(name: str) -> Traversable:
    """A shipped folder: "studies" (the seed's) or "example" (the synthetic example)."""
    parts, in_checkout = SHIPPED[name]
    shipped = files("sweep")
    for part in parts:
        shipped = shipped.joinpath(part)
    if shipped.is_dir():
        return shipped
    return CHECKOUT / in_checkout


def seed_studies() -> Traversable:
    """The folder holding the seed's coarse.toml and fine.toml."""
    return folder("studies")


def _files(name: str) -> list[Traversable]:
    return sorted(
        (f for f in folder(name).iterdir() if f.is_file() and f.name.endswith((".toml", ".py"))),
        key=lambda f: f.name,
    )


@dataclass(frozen=True)
class Init:
    """What `sweep init` wrote."""

    folder: Path
    files: list[Path]

    def text(self) -> str:
        example = self.folder / SHIPPED["example"][1] / "coarse.toml"
        studies = self.folder / SHIPPED["studies"][1]
        # Quoted as the user's shell reads them: a folder may have spaces in its name.
        run_example = shell_join(["sweep", "run", str(example)])
        run_coarse = shell_join(["sweep", "run", str(studies / "coarse.toml")])
        return "\n".join(
            [
                *(f"wrote {path}" for path in self.files),
                f"next: {run_example} (seconds, no data needed); the seed's stages: "
                f"{run_coarse}, then fine.toml",
            ]
        )


def init(target: str | Path = ".") -> Init:
    """Copy the seed's studies into TARGET/studies/ and the synthetic example into
    TARGET/examples/synthetic/ (the repository's layout, so the README's commands work
    there as written). Nothing is overwritten: if any of those files exists, nothing is
    written and a SweepError names it."""
    target = Path(target)
    plan = [
        (source, target / SHIPPED[name][1] / source.name)
        for name in SHIPPED
        for source in _files(name)
    ]
    if not plan:
        raise SweepError("this installation of lambda-sweep has no study files; reinstall it")
    existing = [dest for _, dest in plan if dest.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise SweepError(
            f"{existing[0]} already exists{more}; sweep init never overwrites files: "
            "choose another folder or move them away"
        )
    try:
        for source, dest in plan:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(source.read_bytes())  # the shipped UTF-8 text, byte for byte
    except OSError as exc:
        raise SweepError(f"cannot write into {target}: {exc.strerror or exc}") from None
    return Init(folder=target, files=[dest for _, dest in plan])
