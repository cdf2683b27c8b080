"""Space proposals Θ and their selector Π: two-level sampling (eqs. 8-9) and JSON.

Θ is [m, L, O] logits, one L x O set per proposal; sampling proposal j at temperature τ
draws op o of layer l with probability softmax(θ_j[l] / τ)_o over the ops `mask` allows
(illegal and fixed-away ops have probability exactly 0). Π is [m] logits, π = softmax(Π)
(eq. 8). A two-level sample first draws proposal j ~ π, then an architecture from θ_j:
eq. 9 with a Gumbel-Max P, the sampler the search uses.

Both are plain numpy float32 arrays: the search keeps training them as Keras variables
(`tfnas.search.proposal_arch.ProposalArchParams`), applying `mask` before any softmax.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from tfnas.errors import TfnasError
from tfnas.io import write_text

FORMAT = "tfnas.proposals/1"


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def gumbel_max(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index of a categorical draw along the last axis (-inf logits are never drawn)."""
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=-1)


@dataclasses.dataclass
class Proposals:
    """m space proposals over one space, with the selector Π and their sampling temperature."""

    space: str
    ops: tuple[str, ...]
    theta: np.ndarray  # float32 [m, L, O]
    pi: np.ndarray  # float32 [m]; zeros = uniform selection
    mask: np.ndarray  # bool [L, O]
    tau: float
    targets: dict[str, float] = dataclasses.field(default_factory=dict)
    fixed: dict[int, int] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # how it was optimized

    def __post_init__(self):
        self.theta = np.asarray(self.theta, dtype=np.float32)
        self.pi = np.asarray(self.pi, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        m, L, O = self.theta.shape
        if self.pi.shape != (m,) or self.mask.shape != (L, O) or len(self.ops) != O:
            raise TfnasError(f"proposals: theta {self.theta.shape}, pi {self.pi.shape}, mask "
                             f"{self.mask.shape} and {len(self.ops)} ops do not fit together")
        if not self.mask.any(axis=1).all():
            raise TfnasError("proposals: a layer has no legal op")

    @classmethod
    def uniform(cls, space: str, ops, mask: np.ndarray) -> "Proposals":
        """One proposal that draws every allowed op equally: uniform random architectures."""
        mask = np.asarray(mask, dtype=bool)
        return cls(space, tuple(ops), np.zeros((1,) + mask.shape), np.zeros(1), mask, 1.0)

    @property
    def num_proposals(self) -> int:
        return self.theta.shape[0]

    @property
    def num_layers(self) -> int:
        return self.theta.shape[1]

    def logits(self, tau: float | None = None) -> np.ndarray:
        """θ / τ with masked entries at -inf, [m, L, O]."""
        return np.where(self.mask, self.theta / (self.tau if tau is None else tau), -np.inf)

    def probabilities(self, tau: float | None = None) -> np.ndarray:
        """softmax(θ / τ) per layer, [m, L, O]; exactly 0 where `mask` is False."""
        z = self.logits(tau)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def selection_probabilities(self) -> np.ndarray:
        """π = softmax(Π) (eq. 8), [m]."""
        e = np.exp(self.pi - self.pi.max())
        return e / e.sum()

    def sample(self, n: int, seed: int | np.random.Generator | None = None,
               tau: float | None = None) -> np.ndarray:
        """n architectures by two-level sampling, op indices [n, L]."""
        return self.sample_with_proposals(n, seed, tau)[0]

    def sample_with_proposals(self, n: int, seed: int | np.random.Generator | None = None,
                              tau: float | None = None, chunk: int = 4096
                              ) -> tuple[np.ndarray, np.ndarray]:
        """(op indices [n, L], the proposal each was drawn from [n])."""
        rng = _rng(seed)
        which = gumbel_max(np.broadcast_to(self.pi, (n, self.num_proposals)), rng)
        logits = self.logits(tau)
        archs = np.concatenate([gumbel_max(logits[which[i:i + chunk]], rng)
                                for i in range(0, n, chunk)] or [np.zeros((0, self.num_layers))])
        return archs.astype(np.int64), which

    def most_likely(self) -> np.ndarray:
        """Each proposal's most likely architecture, [m, L]."""
        return np.argmax(self.logits(1.0), axis=-1)

    def best(self) -> np.ndarray:
        """The final pick: the most likely architecture of the most likely proposal, [L]."""
        return self.most_likely()[int(np.argmax(self.pi))]

    def arch_string(self, indices) -> str:
        """The genotype string form: comma-separated op names."""
        return ",".join(self.ops[int(i)] for i in indices)

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "space": self.space, "ops": list(self.ops), "tau": self.tau,
            "targets": self.targets, "fixed": {str(k): v for k, v in self.fixed.items()},
            "theta": self.theta.tolist(), "pi": self.pi.tolist(),
            "mask": self.mask.astype(int).tolist(), "info": self.info,
        }

    @classmethod
    def from_json(cls, obj: dict | str) -> "Proposals":
        try:
            if isinstance(obj, str):
                obj = json.loads(obj)
            if obj.get("format") != FORMAT:
                raise TfnasError(f"not a {FORMAT} file (format {obj.get('format')!r})")
            return cls(space=obj["space"], ops=tuple(obj["ops"]), tau=float(obj["tau"]),
                       theta=np.array(obj["theta"], dtype=np.float32),
                       pi=np.array(obj["pi"], dtype=np.float32),
                       mask=np.array(obj["mask"], dtype=bool),
                       targets={k: float(v) for k, v in obj.get("targets", {}).items()},
                       fixed={int(k): int(v) for k, v in obj.get("fixed", {}).items()},
                       info=dict(obj.get("info", {})))
        except json.JSONDecodeError as e:
            raise TfnasError(f"proposals JSON does not parse: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise TfnasError(f"proposals JSON is malformed: {e!r}") from None

    @staticmethod
    def json_text(obj: dict) -> str:
        """The file text of `to_json()`'s dict, as `save` writes it."""
        return json.dumps(obj) + "\n"

    def save(self, path: str) -> None:
        """Writes the JSON atomically (a crash never leaves a half-written file)."""
        write_text(path, self.json_text(self.to_json()))

    @classmethod
    def load(cls, path: str) -> "Proposals":
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise TfnasError(f"cannot read {path}: {e.strerror}") from None
        return cls.from_json(text)
