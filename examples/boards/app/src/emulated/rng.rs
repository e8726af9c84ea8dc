//! TEST-ONLY randomness: ChaCha20 from a seed the host chose.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// TEST-ONLY: ChaCha20 seeded with a value the host chose and knows. Every
/// key and nonce it makes is predictable by whoever knows the seed: never
/// acceptable on a device, which must seed from a hardware entropy source
/// (neither QEMU's `virt` nor `mps2-an386` has one the firmware can reach
/// without a driver of its own).
pub fn test_only_rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}
