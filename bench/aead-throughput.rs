//! Throughput of one core for what every stored byte goes through: the AEADs envsnap
//! could seal with (AES-256-GCM, ChaCha20-Poly1305, both from ring), beside BLAKE3
//! (plain and keyed) and zstd; and the one-off costs: an X25519 seal per pack, argon2id
//! per open. `cargo run --release --example aead-throughput`; bench/README.md says more.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ring::aead::{AES_256_GCM, Aad, Algorithm, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

/// Runs `work` over `bytes` bytes until a second has passed; returns MiB/s.
fn rate(bytes: usize, mut work: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        work();
        rounds += 1;
    }
    (bytes as f64 * rounds as f64) / start.elapsed().as_secs_f64() / f64::from(1 << 20)
}

fn aead(algorithm: &'static Algorithm, data: &[u8]) -> f64 {
    let key = LessSafeKey::new(UnboundKey::new(algorithm, &[7u8; 32]).expect("a 32-byte key"));
    let mut buffer = data.to_vec();
    let mut counter = 0u64;
    rate(data.len(), || {
        counter += 1;
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_le_bytes());
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&[0u8; 38]), &mut buffer)
            .expect("seals");
        let _ = black_box(tag);
    })
}

fn main() {
    // 1 MiB, the average chunk: random bytes for the AEADs and hashes (their speed
    // does not depend on content), SQL-like text for zstd.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let random: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let text: Vec<u8> = (0..)
        .flat_map(|row: u64| {
            format!(
                "INSERT INTO orders VALUES ({row}, 'customer {}', {}.{:02});\n",
                row % 977,
                row * 7 % 10_000,
                row % 100
            )
            .into_bytes()
        })
        .take(1 << 20)
        .collect();
    let key = [9u8; 32];
    let compressed = zstd::bulk::compress(&text, 3).expect("compresses");
    let rows: Vec<(&str, f64)> = vec![
        ("AES-256-GCM seal (ring)", aead(&AES_256_GCM, &random)),
        ("ChaCha20-Poly1305 seal (ring)", aead(&CHACHA20_POLY1305, &random)),
        (
            "BLAKE3 hash",
            rate(random.len(), || {
                black_box(blake3::hash(&random));
            }),
        ),
        (
            "BLAKE3 keyed hash",
            rate(random.len(), || {
                black_box(blake3::keyed_hash(&key, &random));
            }),
        ),
        ("zstd level 3 compress (SQL text)", rate(text.len(), || drop(black_box(zstd::bulk::compress(&text, 3))))),
        ("zstd level 1 compress (SQL text)", rate(text.len(), || drop(black_box(zstd::bulk::compress(&text, 1))))),
        (
            "zstd decompress (SQL text)",
            rate(text.len(), || drop(black_box(zstd::bulk::decompress(&compressed, text.len())))),
        ),
    ];
    println!("| one core, 1 MiB buffers | MiB/s |");
    println!("|---|---|");
    for (name, mib) in rows {
        println!("| {name} | {mib:.0} |");
    }
    let start = Instant::now();
    let mut seals = 0u32;
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([5u8; 32]));
    while start.elapsed() < Duration::from_secs(1) {
        let ephemeral = x25519_dalek::StaticSecret::from([seals as u8; 32]);
        black_box(ephemeral.diffie_hellman(&public));
        black_box(x25519_dalek::PublicKey::from(&ephemeral));
        seals += 1;
    }
    println!(
        "\nX25519 key agreement + public key (one per pack, per manifest): {:.0} µs",
        start.elapsed().as_secs_f64() * 1e6 / f64::from(seals)
    );
    let params = envsnap::crypto::keyfile::DEFAULT_KDF;
    let argon2 = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(32)).expect("valid"),
    );
    let start = Instant::now();
    let mut out = [0u8; 32];
    argon2.hash_password_into(b"password", &[1u8; 32], &mut out).expect("derives");
    println!(
        "argon2id {} MiB, {} passes, {} lane (once per command): {:.0} ms",
        params.memory_kib / 1024,
        params.iterations,
        params.parallelism,
        start.elapsed().as_secs_f64() * 1e3
    );
}
