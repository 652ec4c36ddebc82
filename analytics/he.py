"""The homomorphic engine: CKKS through TenSEAL, behind a small protocol.

Layout: column packing. A batch of records becomes one ciphertext per feature, each holding up to
N/2 records in its slots. A linear model's score is then Σ wᵢ·ctᵢ + b: plaintext multiplications and
additions only, no rotations, so the compute side needs no evaluation keys at all. It receives a
context holding the parameters only (~100 bytes): it can evaluate, it cannot encrypt or decrypt.

Parameters: N = 8192, coefficient moduli [60, 48, 60] (168 bits, within the 218-bit bound for
128-bit security at N = 8192), scale 2^48. One multiplicative level: enough for Σ wᵢ·ctᵢ + b. The first prime's
room above the scale, 2^11, must hold every score and every term wᵢ·xᵢ; features are clipped to the model's range
before encryption, so the model bounds them (LinearModel.score_bound). A model whose bound exceeds 2^10 (half the
room) gets [60, 40, 60] at 2^40 instead: room 2^19, 250 times less precise (scoring_parameters).
Scores are returned as encrypted LOGITS (or values); the sigmoid and thresholds are applied after
decryption, exactly.

Sums (training updates, issue 18): additions only, no multiplication, but the sums are then solved (normal
equations, Newton steps) and the solve amplifies their error by the system's condition number. Their keys
(`keygen_for_sums`) keep two 60-bit primes for the data and a scale of 2^50: ~2^10 more precision than the scoring
parameters, and room for sums up to ~2^60; [60, 60, 60] is 180 bits, within the 218-bit bound for 128-bit security
at N = 8192. Measured on 40 diabetes records: linear-regression weights within 3e-8 of central least squares, against
1.3e-4 with the scoring parameters.

Domain code never imports tenseal: it asks analytics.bootstrap for the engine.
"""

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

POLY_MODULUS_DEGREE = 8192
# Scoring parameters, most precise first (scoring_parameters picks the first that holds the model's scores):
# (coefficient moduli, scale). A score decrypts within about 1e-8 of the plaintext's at 2^48, 2e-5 at 2^40
# (breast-cancer, 4,096 records): at a million records, a score that close to the threshold occurs, and 2^40 gave it
# the other label. Both are 3 primes, so encryption costs the same. Every set starts with FIRST_PRIME_BITS.
SCORING_PARAMETERS = (((60, 48, 60), 2**48), ((60, 40, 60), 2**40))
FIRST_PRIME_BITS = 60  # SEAL's largest; TenSEAL does not expose a loaded context's primes, so uploads are assumed so
SLOTS = POLY_MODULUS_DEGREE // 2
SUM_COEFF_MOD_BIT_SIZES = (60, 60, 60)
SUM_SCALE = 2**50
PUBLIC_CONTEXT_CACHE = 4


@dataclass(frozen=True)
class KeySet:
    """A requester's keys, serialised.

    secret:   everything, secret key included: only the requester (or the portal's key vault) holds it
    public:   public key and parameters, no secret key: enough to encrypt (the custodian)
    compute:  parameters only, no keys at all: enough to evaluate (the compute worker)
    """

    secret: bytes
    public: bytes
    compute: bytes


class HomomorphicEngine(Protocol):
    slots: int

    def keygen(self, *, score_bound: float = 0.0) -> KeySet:
        """Keys for scoring a model whose scores and terms stay within ±score_bound (scoring_parameters)."""
        ...

    def score_capacity(self, context: bytes) -> float:
        """The largest score magnitude a (public or parameters-only) context's parameters hold."""
        ...

    def public_parts(self, secret: bytes) -> KeySet:
        """Derive the public and compute contexts from a secret context."""
        ...

    def keygen_for_sums(self) -> KeySet:
        """Keys for encrypted sums that are solved after decryption (training updates): see the module's docstring."""
        ...

    def encrypt_columns(self, public: bytes, features: np.ndarray) -> list[bytes]:
        """Encrypt a (records × features) matrix, records ≤ slots, as one ciphertext per feature."""
        ...

    def linear_score(self, compute: bytes, columns: Sequence[bytes], weights: Sequence[float], bias: float) -> bytes:
        """Σ wᵢ·ctᵢ + b on ciphertexts, with the parameters-only context. Returns one ciphertext."""
        ...

    def encrypt_and_score(self, public: bytes, features: np.ndarray, weights: Sequence[float], bias: float) -> bytes:
        """encrypt_columns then linear_score in memory, for a scorer on the encrypting machine: only the score
        ciphertext is serialised. Returns it."""
        ...

    def decrypt(self, secret: bytes, ciphertext: bytes, count: int) -> np.ndarray:
        """The first `count` slots of a ciphertext, decrypted."""
        ...

    def decrypt_many(self, secret: bytes, ciphertexts: Sequence[tuple[bytes, int]]) -> list[np.ndarray]:
        """decrypt() for each (ciphertext, count), the secret context read once."""
        ...

    def decrypt_each(self, secret: bytes, ciphertexts: Iterable[tuple[bytes, int]]) -> Iterator[np.ndarray]:
        """decrypt_many, lazily: each (ciphertext, count) read, decrypted and answered before the next is read."""
        ...

    def is_secret_context(self, context: bytes) -> bool:
        """Whether a serialised context carries a secret key (the server refuses to store one)."""
        ...

    def encrypt_vector(self, public: bytes, values: Sequence[float]) -> bytes:
        """One ciphertext holding `values` (1..slots of them), with a public context: a training update."""
        ...

    def add(self, context: bytes, ciphertexts: Sequence[bytes]) -> bytes:
        """The slot-wise sum of ciphertexts, with a public or parameters-only context (a secret one is refused):
        what a training round's aggregator computes, never decrypting."""
        ...

    def refuse_secret(self, context: bytes) -> None:
        """Raise ValueError if `context` holds a secret key (what an aggregator is handed must not)."""
        ...


def scoring_parameters(score_bound: float) -> tuple[tuple[int, ...], float]:
    """The coefficient moduli and scale for scoring a model whose scores and terms stay within ±score_bound: the most
    precise of SCORING_PARAMETERS that holds them. Raises ValueError for a bound none holds (a CKKS value beyond its
    room does not fail: it decrypts to a wrong number)."""
    for bit_sizes, scale in SCORING_PARAMETERS:
        if score_bound <= score_room(scale):
            return bit_sizes, scale
    raise ValueError("the model's scores exceed what the homomorphic parameters hold")


def score_room(scale: float) -> float:
    """The largest score magnitude parameters at `scale` hold with a factor of 2 to spare: half the first prime's room
    above the scale (2^10 at 2^48, 2^18 at 2^40)."""
    return 2.0 ** (FIRST_PRIME_BITS - 2) / scale


class TenSEALEngine:
    slots = SLOTS

    def __init__(self) -> None:
        import tenseal

        self._ts = tenseal
        self._public_contexts: dict[bytes, Any] = {}  # digest -> deserialised public or parameters-only context

    def _keyless_context(self, serialised: bytes) -> Any:
        """The deserialised public or parameters-only context, kept for the few most recent ones:
        deserialising one takes ~30 ms (SEAL precomputes its tables) and every chunk of a batch uses
        the same one. Never a secret key: a context holding one is refused, not kept."""
        digest = hashlib.sha256(serialised).digest()
        context = self._public_contexts.get(digest)
        if context is None:
            context = self._ts.context_from(serialised)
            if context.has_secret_key():
                raise ValueError("a public context must not hold a secret key")
            self._keep(digest, context)
        return context

    def _keep(self, digest: bytes, context: Any) -> None:
        while len(self._public_contexts) >= PUBLIC_CONTEXT_CACHE:
            self._public_contexts.pop(next(iter(self._public_contexts)))
        self._public_contexts[digest] = context

    def keygen(self, *, score_bound: float = 0.0) -> KeySet:
        bit_sizes, scale = scoring_parameters(score_bound)
        return self._keygen(bit_sizes, scale)

    def score_capacity(self, context: bytes) -> float:
        return score_room(self._keyless_context(context).global_scale)

    def keygen_for_sums(self) -> KeySet:
        return self._keygen(SUM_COEFF_MOD_BIT_SIZES, SUM_SCALE)

    def _keygen(self, coeff_mod_bit_sizes: Sequence[int], scale: float) -> KeySet:
        context = self._ts.context(
            self._ts.SCHEME_TYPE.CKKS, POLY_MODULUS_DEGREE, coeff_mod_bit_sizes=list(coeff_mod_bit_sizes)
        )
        context.global_scale = scale
        return self._parts(context)

    def public_parts(self, secret: bytes) -> KeySet:
        return self._parts(self._ts.context_from(secret))

    def encrypt_columns(self, public: bytes, features: np.ndarray) -> list[bytes]:
        if features.ndim != 2 or not 0 < features.shape[0] <= self.slots:
            raise ValueError(f"expected 1..{self.slots} records by features")
        context = self._keyless_context(public)
        return [self._ts.ckks_vector(context, column.tolist()).serialize() for column in features.T]

    def linear_score(self, compute: bytes, columns: Sequence[bytes], weights: Sequence[float], bias: float) -> bytes:
        if len(columns) != len(weights) or not columns:
            raise ValueError("one ciphertext per weight is required")
        context = self._keyless_context(compute)
        return self._score((self._ts.ckks_vector_from(context, column) for column in columns), weights, bias)

    def encrypt_and_score(self, public: bytes, features: np.ndarray, weights: Sequence[float], bias: float) -> bytes:
        if features.ndim != 2 or not 0 < features.shape[0] <= self.slots or features.shape[1] != len(weights):
            raise ValueError(f"expected 1..{self.slots} records by one feature per weight")
        context = self._keyless_context(public)
        # One column's ciphertext alive at a time: each is added into the total, then let go.
        return self._score((self._ts.ckks_vector(context, column.tolist()) for column in features.T), weights, bias)

    @staticmethod
    def _score(columns: Iterable[Any], weights: Sequence[float], bias: float) -> bytes:
        """Σ wᵢ·ctᵢ + b, serialised."""
        total = None
        for column, weight in zip(columns, weights, strict=True):
            term = column * float(weight)
            total = term if total is None else total + term
        assert total is not None
        return (total + float(bias)).serialize()

    def decrypt(self, secret: bytes, ciphertext: bytes, count: int) -> np.ndarray:
        return self.decrypt_many(secret, [(ciphertext, count)])[0]

    def decrypt_many(self, secret: bytes, ciphertexts: Sequence[tuple[bytes, int]]) -> list[np.ndarray]:
        return list(self.decrypt_each(secret, ciphertexts))

    def decrypt_each(self, secret: bytes, ciphertexts: Iterable[tuple[bytes, int]]) -> Iterator[np.ndarray]:
        """The secret context lives for this call only: it is never cached. It is read before the first ciphertext
        is asked for, so a context without a secret key is refused at the first answer."""
        context = self._ts.context_from(secret)
        if not context.has_secret_key():
            raise ValueError("this context holds no secret key")
        for ciphertext, count in ciphertexts:
            yield np.asarray(self._ts.ckks_vector_from(context, ciphertext).decrypt()[:count])

    def is_secret_context(self, context: bytes) -> bool:
        """A context found keyless is kept like the ones the engine uses: the compute step checks its
        context, then scores with it, and would otherwise deserialise it twice (~30 ms each)."""
        digest = hashlib.sha256(context).digest()
        if digest in self._public_contexts:
            return False
        loaded = self._ts.context_from(context)
        if loaded.has_secret_key():
            return True
        self._keep(digest, loaded)
        return False

    def encrypt_vector(self, public: bytes, values: Sequence[float]) -> bytes:
        if not 0 < len(values) <= self.slots:
            raise ValueError(f"expected 1..{self.slots} values")
        return self._ts.ckks_vector(self._keyless_context(public), [float(v) for v in values]).serialize()

    def add(self, context: bytes, ciphertexts: Sequence[bytes]) -> bytes:
        if not ciphertexts:
            raise ValueError("nothing to add")
        loaded = self._keyless_context(context)
        total = None
        for ciphertext in ciphertexts:
            vector = self._ts.ckks_vector_from(loaded, ciphertext)
            total = vector if total is None else total + vector
        assert total is not None
        return total.serialize()

    def refuse_secret(self, context: bytes) -> None:
        self._keyless_context(context)

    def _parts(self, context) -> KeySet:
        return KeySet(
            secret=context.serialize(save_secret_key=True),
            public=context.serialize(save_secret_key=False, save_galois_keys=False, save_relin_keys=False),
            compute=context.serialize(
                save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
            ),
        )
