"""The seed derivations of stepattr.core.seeds: values every stored output depends on."""

from __future__ import annotations

import numpy as np

from stepattr.core.seeds import chained_seed, derive_seed


def test_derive_seed_is_numpys_seed_sequence_in_63_or_64_bits() -> None:
    for keys in [(0,), (3, 1, 7), (2**40, 5, 0, 9)]:
        state = np.random.SeedSequence(list(keys)).generate_state(2, dtype=np.uint32)
        full = (int(state[0]) << 32) | int(state[1])
        assert derive_seed(*keys, bits=64) == full
        assert derive_seed(*keys) == full & (2**63 - 1)
    assert any(derive_seed(0, t, 5, j, bits=64) >= 2**63 for t in range(4) for j in range(4))


def test_chained_seed_keeps_the_output_functions_draws() -> None:
    # the polynomial chain seed_{i+1} = (seed_i * 1_000_003 + key_i + 1) mod (2**63 - 1)
    assert chained_seed() == 0
    assert chained_seed(0) == 1
    assert chained_seed(4, 0, 2) == ((5 * 1_000_003 + 1) * 1_000_003 + 3)
    assert chained_seed(1, 2) != chained_seed(2, 1)
