//! Host tests: the command line, the settings made from it, the TEST-ONLY
//! RNG.

use mqtts::fingerprint::Fingerprint;
use mqtts::trust::Pin;

use super::*;
use crate::app::BrokerTrust;

const DEFAULTS: Defaults = Defaults {
    client_id: "riscv32-virt",
};
const HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn defaults_and_every_key() {
    let args = parse_args("seed=0123456789abcdef", DEFAULTS).unwrap();
    assert_eq!(args.trust, Trust::Flespi);
    assert_eq!(args.port, 8883);
    assert_eq!(args.client_id, "riscv32-virt");
    assert_eq!((args.ssid, args.password), ("test-net", "test-password"));
    assert_eq!(args.seed, 0x0123_4567_89ab_cdef);

    let line = std::format!(
        "trust=spki:{HEX} port=18883 client=c1 prefix=t/p interval=5 keepalive=7 seed=FFFFFFFFFFFFFFFF ssid=lab password="
    );
    let args = parse_args(&line, DEFAULTS).unwrap();
    assert!(matches!(args.trust, Trust::Spki(hash) if hash[0] == 0xba));
    assert_eq!(
        (args.port, args.client_id, args.prefix, args.interval_secs),
        (18883, "c1", Some("t/p"), 5)
    );
    assert_eq!((args.ssid, args.password), ("lab", ""));
    assert_eq!(args.keep_alive_secs, 7);
    let mut names = Names::new();
    let built = settings(&mut names, &args, None);
    assert_eq!((built.topic_prefix, built.keep_alive_secs), ("t/p", 7));
    let settings = built;
    assert!(matches!(
        settings.trust,
        BrokerTrust::Pins([Pin::PublicKey(_)])
    ));

    let line = std::format!("trust=cert:{HEX} seed=0000000000000001");
    let args = parse_args(&line, DEFAULTS).unwrap();
    let mut names = Names::new();
    let built = super::settings(&mut names, &args, None);
    assert_eq!(built.topic_prefix, "devices/riscv32-virt");
    assert!(matches!(
        built.trust,
        BrokerTrust::Pins([Pin::Certificate(Fingerprint::Sha256(_))])
    ));

    let args = parse_args("trust=ca:/tmp/root.der seed=0000000000000001", DEFAULTS).unwrap();
    assert_eq!(args.trust, Trust::Ca("/tmp/root.der"));
    let mut names = Names::new();
    let built = super::settings(&mut names, &args, Some(b"der"));
    assert!(matches!(built.trust, BrokerTrust::Roots([b"der"])));
}

#[test]
fn refusals_name_the_word() {
    let refused = |line: &'static str| parse_args(line, DEFAULTS).unwrap_err();
    assert_eq!(refused(""), ArgError::MissingSeed);
    assert_eq!(refused("trust=flespi"), ArgError::MissingSeed);
    assert_eq!(
        refused("seed=12 "),
        ArgError::BadValue {
            word: "seed=12",
            expected: "16 hex digits"
        }
    );
    assert_eq!(
        refused("/path/fw.elf"),
        ArgError::UnknownWord("/path/fw.elf")
    );
    assert_eq!(refused("colour=red"), ArgError::UnknownWord("colour=red"));
    assert_eq!(
        refused("port=1 port=2 seed=0000000000000001"),
        ArgError::Repeated("port")
    );
    assert!(matches!(refused("port=0"), ArgError::BadValue { .. }));
    assert!(matches!(refused("port=65536"), ArgError::BadValue { .. }));
    assert!(matches!(refused("interval=0"), ArgError::BadValue { .. }));
    assert!(matches!(refused("keepalive=0"), ArgError::BadValue { .. }));
    assert!(matches!(
        refused("trust=spki:abcd"),
        ArgError::BadValue { .. }
    ));
    assert!(matches!(refused("trust=ca:"), ArgError::BadValue { .. }));
    assert!(matches!(refused("trust=pin"), ArgError::BadValue { .. }));
    assert!(matches!(
        refused("password=short"),
        ArgError::BadValue { .. }
    ));
    let text = std::format!("{}", refused("colour=red"));
    assert!(text.contains("unknown word `colour=red`"), "{text}");
}

#[test]
fn the_test_only_rng_repeats_its_seed() {
    use rand_core::RngCore;
    let (mut a, mut b) = (test_only_rng(7), test_only_rng(7));
    assert_eq!(a.next_u64(), b.next_u64());
    assert_ne!(test_only_rng(8).next_u64(), test_only_rng(7).next_u64());
}
