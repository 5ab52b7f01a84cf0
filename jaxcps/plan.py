"""`jaxcps.Plan`: which algorithm runs each conv layer, with the measurements behind it.

A plan maps a layer key (a name-stack key of `jaxcps.routed` such as
``"resnet50/conv2_block1_2_conv"``, a Flax module path such as ``"features/Conv_3"``, or the
`name` given to `jaxcps.conv_general_dilated`) to an algorithm. `jaxcps.select` and
`jaxcps.flax.select` build one from measurements; one can also be written by hand with
`Plan.from_choices`. Plans are saved as versioned JSON. This module imports no Flax.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from jaxcps.algorithms import ALGORITHMS, FFI_ALGORITHMS, check_algorithm

#: Written into every saved plan; `Plan.load` refuses other versions.
PLAN_FORMAT = "jaxcps-plan"
PLAN_VERSION = 1


@dataclasses.dataclass(frozen=True)
class LayerRecord:
    """What selection measured for one conv layer, and what it chose.

    Attributes:
      path: the layer key (see the module docstring).
      choice: the algorithm the plan runs for this layer.
      input_shape: NHWC shape of the activation the layer was measured on (default: ()).
      kernel_shape: HWIO shape of its weights (default: ()).
      output_shape: NHWC shape of its output (default: ()).
      window_strides: strides of the convolution (default: ()).
      zero_fraction: fraction of zeros in the measured activation, or None (default: None).
      times: candidate -> median time in seconds; None where the candidate cannot run this
        layer (default: {}).
      footprints: candidate -> bytes of its lowered or compressed activation; None for "xla",
        whose internal buffers are unknown (default: {}).
    """

    path: str
    choice: str
    input_shape: tuple[int, ...] = ()
    kernel_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    window_strides: tuple[int, ...] = ()
    zero_fraction: float | None = None
    times: Mapping[str, float | None] = dataclasses.field(default_factory=dict)
    footprints: Mapping[str, int | None] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_algorithm(self.choice)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "choice": self.choice,
            "input_shape": list(self.input_shape),
            "kernel_shape": list(self.kernel_shape),
            "output_shape": list(self.output_shape),
            "window_strides": list(self.window_strides),
            "zero_fraction": self.zero_fraction,
            "times": dict(self.times),
            "footprints": dict(self.footprints),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LayerRecord:
        return cls(
            path=data["path"],
            choice=data["choice"],
            input_shape=tuple(data.get("input_shape", ())),
            kernel_shape=tuple(data.get("kernel_shape", ())),
            output_shape=tuple(data.get("output_shape", ())),
            window_strides=tuple(data.get("window_strides", ())),
            zero_fraction=data.get("zero_fraction"),
            times=dict(data.get("times", {})),
            footprints=dict(data.get("footprints", {})),
        )


class Plan(Mapping[str, str]):
    """Per-layer algorithm choices, read-only mapping from layer key to algorithm.

    Example usage::

      >>> import jaxcps
      >>> plan = jaxcps.Plan.from_choices({"Conv_0": "xla", "Conv_1": "cpo"})
      >>> plan["Conv_1"]
      'cpo'
      >>> plan.save("/tmp/plan.json")
      >>> jaxcps.Plan.load("/tmp/plan.json") == plan
      True

    Args:
      layers: the layer records, in execution order.
      meta: free-form information saved with the plan, e.g. the candidates and repeats
        (default: None, an empty dict).

    Raises:
      ValueError: if two records have the same path.
    """

    def __init__(self, layers: list[LayerRecord], meta: Mapping[str, Any] | None = None):
        self._layers: dict[str, LayerRecord] = {}
        for record in layers:
            if record.path in self._layers:
                raise ValueError(f"plan has two records for layer {record.path!r}")
            self._layers[record.path] = record
        self.meta: dict[str, Any] = dict(meta or {})

    @classmethod
    def from_choices(cls, choices: Mapping[str, str]) -> Plan:
        """A hand-written plan: layer key -> algorithm, without measurements.

        Raises:
          ValueError: for an algorithm not in `jaxcps.ALGORITHMS`.
        """
        return cls([LayerRecord(path=path, choice=alg) for path, alg in choices.items()])

    def __getitem__(self, path: str) -> str:
        return self._layers[path].choice

    def __iter__(self) -> Iterator[str]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return self._layers == other._layers and self.meta == other.meta

    def record(self, path: str) -> LayerRecord:
        """The full record of layer `path` (KeyError if the plan does not cover it)."""
        return self._layers[path]

    @property
    def records(self) -> list[LayerRecord]:
        """All layer records, in the order they were added (execution order for `select`)."""
        return list(self._layers.values())

    def lookup(self, name: str | None) -> str | None:
        """The algorithm for layer `name`, or None if not covered (the plan-hook signature)."""
        record = self._layers.get(name) if name is not None else None
        return record.choice if record is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "meta": self.meta,
            "layers": [record.to_json() for record in self._layers.values()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Builds a plan from the dict that `to_json` gives.

        Raises:
          ValueError: if `data` is not a jaxcps plan of a version this code reads.
        """
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a jaxcps plan: format is {data.get('format')!r}")
        if data.get("version") != PLAN_VERSION:
            raise ValueError(
                f"plan version {data.get('version')!r} is not supported (this jaxcps reads "
                f"version {PLAN_VERSION})"
            )
        return cls([LayerRecord.from_json(r) for r in data["layers"]], data.get("meta"))

    def save(self, path: str | os.PathLike) -> None:
        """Writes the plan as JSON to `path`."""
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """Reads a plan written by `save`.

        Raises:
          ValueError: if the file is not a jaxcps plan of a supported version.
          OSError: if the file cannot be read.
        """
        with open(path) as f:
            return cls.from_json(json.load(f))

    def __repr__(self) -> str:
        return f"Plan({dict(self)!r})"

    def __str__(self) -> str:
        return format_table(self.records)


def _candidates(records: list[LayerRecord]) -> list[str]:
    seen = {name for r in records for name in r.times}
    return [a for a in ALGORITHMS if a in seen]


def format_table(records: list[LayerRecord]) -> str:
    """A fixed-width table: path, shapes, zeros, each candidate's median time in ms (fastest
    starred), the compression ratio against im2col (CR) of every other candidate with a
    footprint, and the choice."""
    candidates = _candidates(records)
    header = ["layer", "input NHWC", "kernel", "zeros"] + [f"{c} ms" for c in candidates]
    compressed = [
        c
        for c in FFI_ALGORITHMS
        if c != "im2col" and any(r.footprints.get(c) is not None for r in records)
    ]
    header += [f"CR {c}" for c in compressed] + ["choice"]
    rows = [header]
    for r in records:
        row = [
            r.path,
            "x".join(map(str, r.input_shape)) or "-",
            "x".join(map(str, r.kernel_shape)) or "-",
            f"{r.zero_fraction:.0%}" if r.zero_fraction is not None else "-",
        ]
        best = min((t for t in r.times.values() if t is not None), default=None)
        for c in candidates:
            t = r.times.get(c)
            mark = "*" if t is not None and t == best else " "
            row.append(f"{t * 1e3:.3f}{mark}" if t is not None else "-")
        row.extend(_compression(r, c) for c in compressed)
        row.append(r.choice)
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _compression(record: LayerRecord, algorithm: str) -> str:
    """Compression ratio of `algorithm` against im2col ("-" when not measured)."""
    base = record.footprints.get("im2col")
    own = record.footprints.get(algorithm)
    if base and own:
        return f"{base / own:.1f}"
    return "-"
