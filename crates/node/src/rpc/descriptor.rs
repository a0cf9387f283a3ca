//! Bitcoin Core's script templates (`Solver`), the output descriptors it infers for a script
//! (`InferDescriptor` with no keys or scripts known, as `decodescript` and the `desc` of a
//! decoded output use) and the BIP-380 descriptor checksum.
//!
//! The templates and inference follow Core 28 (`src/script/solver.cpp`,
//! `src/script/descriptor.cpp`). One narrowing: inside P2WSH, Core also infers a miniscript
//! (`wsh(and_v(...))`) when the script is one; this node infers `pk()` and `multi()` there and
//! otherwise falls back to `addr()` of the P2WSH output, which describes the same script.

use bitcoin::hashes::{hash160, Hash};
use bitcoin::{Address, Network, Script, ScriptBuf, WPubkeyHash};

const OP_0: u8 = 0x00;
const OP_PUSHDATA1: u8 = 0x4c;
const OP_PUSHDATA2: u8 = 0x4d;
const OP_PUSHDATA4: u8 = 0x4e;
const OP_1: u8 = 0x51;
const OP_16: u8 = 0x60;
const OP_RETURN: u8 = 0x6a;
const OP_DUP: u8 = 0x76;
const OP_EQUAL: u8 = 0x87;
const OP_EQUALVERIFY: u8 = 0x88;
const OP_HASH160: u8 = 0xa9;
const OP_CHECKSIG: u8 = 0xac;
const OP_CHECKMULTISIG: u8 = 0xae;
/// Core's `MAX_OPCODE` (OP_NOP10): anything above is not a valid opcode.
const MAX_OPCODE: u8 = 0xb9;
/// Core's `MAX_SCRIPT_ELEMENT_SIZE`: the largest push a valid script has.
const MAX_SCRIPT_ELEMENT_SIZE: usize = 520;
/// Core's `MAX_SCRIPT_SIZE`: a longer script is unspendable.
const MAX_SCRIPT_SIZE: usize = 10_000;
/// Core's `MAX_PUBKEYS_PER_MULTISIG`: most keys (and required signatures) of bare multisig.
const MAX_PUBKEYS_PER_MULTISIG: i64 = 20;

/// A script's template, as Core's `Solver` classifies it (`TxoutType`), with what Core's
/// descriptor inference needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptKind {
    NonStandard,
    /// `OP_1 <0x4e73>`, pay-to-anchor.
    Anchor,
    /// `<pubkey> OP_CHECKSIG`.
    PubKey(Vec<u8>),
    /// P2PKH, with its 20-byte key hash.
    PubKeyHash([u8; 20]),
    ScriptHash,
    /// Bare `m <keys> n OP_CHECKMULTISIG`.
    Multisig {
        required: u8,
        keys: Vec<Vec<u8>>,
    },
    /// `OP_RETURN` followed by pushes only.
    NullData,
    WitnessV0KeyHash,
    WitnessV0ScriptHash,
    /// With its 32-byte output key.
    WitnessV1Taproot([u8; 32]),
    /// A witness program of a version (or, for version 1, a length) with no meaning yet.
    WitnessUnknown,
}

impl ScriptKind {
    /// Core's name (`GetTxnOutputType`), the `type` of a decoded script.
    pub fn core_name(&self) -> &'static str {
        match self {
            ScriptKind::NonStandard => "nonstandard",
            ScriptKind::Anchor => "anchor",
            ScriptKind::PubKey(_) => "pubkey",
            ScriptKind::PubKeyHash(_) => "pubkeyhash",
            ScriptKind::ScriptHash => "scripthash",
            ScriptKind::Multisig { .. } => "multisig",
            ScriptKind::NullData => "nulldata",
            ScriptKind::WitnessV0KeyHash => "witness_v0_keyhash",
            ScriptKind::WitnessV0ScriptHash => "witness_v0_scripthash",
            ScriptKind::WitnessV1Taproot(_) => "witness_v1_taproot",
            ScriptKind::WitnessUnknown => "witness_unknown",
        }
    }
}

/// One parsed script operation: its opcode and, for a push, its data.
struct Op<'a> {
    opcode: u8,
    data: &'a [u8],
}

/// The script's operations, or `None` if a push runs past the end (Core's `GetOp` failing).
fn ops(script: &[u8]) -> Option<Vec<Op<'_>>> {
    let mut out = Vec::new();
    let mut rest = script;
    while let Some((&opcode, after)) = rest.split_first() {
        let (len, after) = match opcode {
            0..OP_PUSHDATA1 => (usize::from(opcode), after),
            OP_PUSHDATA1 => (usize::from(*after.first()?), &after[1..]),
            OP_PUSHDATA2 => {
                let bytes = after.get(..2)?;
                (
                    usize::from(u16::from_le_bytes([bytes[0], bytes[1]])),
                    &after[2..],
                )
            }
            OP_PUSHDATA4 => {
                let bytes = after.get(..4)?;
                let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                (usize::try_from(len).ok()?, &after[4..])
            }
            _ => (0, after),
        };
        let data = after.get(..len)?;
        out.push(Op { opcode, data });
        rest = &after[len..];
    }
    Some(out)
}

/// Core's `CPubKey::ValidSize`: 33 bytes with header 2 or 3, or 65 with header 4, 6 or 7.
fn valid_pubkey_size(key: &[u8]) -> bool {
    let expected = match key.first() {
        Some(2 | 3) => 33,
        Some(4 | 6 | 7) => 65,
        _ => return false,
    };
    key.len() == expected
}

/// Core's `CPubKey::IsValidNonHybrid`: not the hybrid (6, 7) encodings.
fn non_hybrid_pubkey(key: &[u8]) -> bool {
    valid_pubkey_size(key) && matches!(key[0], 2..=4)
}

/// Core's `GetScriptNumber` for the counts of a multisig: OP_1..OP_16, or a minimal push of a
/// minimally encoded number, within `min..=max`.
fn script_number(op: &Op<'_>, min: i64, max: i64) -> Option<i64> {
    let n = if (OP_1..=OP_16).contains(&op.opcode) {
        i64::from(op.opcode - OP_1 + 1)
    } else if op.opcode < OP_PUSHDATA1 {
        // A push via the direct opcode is minimal unless an OP_n would have done (Core's
        // `CheckMinimalPush`); the numbers here fit in one byte.
        match op.data {
            [byte] if (1..=16).contains(byte) || *byte == 0x81 => return None,
            // Minimal `CScriptNum` encoding of a positive number below 128.
            [byte] if *byte < 0x80 => i64::from(*byte),
            _ => return None,
        }
    } else {
        return None;
    };
    (min..=max).contains(&n).then_some(n)
}

fn match_multisig(script: &[u8]) -> Option<ScriptKind> {
    if script.last() != Some(&OP_CHECKMULTISIG) {
        return None;
    }
    let ops = ops(script)?;
    let (first, rest) = ops.split_first()?;
    let required = script_number(first, 1, MAX_PUBKEYS_PER_MULTISIG)?;
    let keys: Vec<Vec<u8>> = rest
        .iter()
        // Any push of a key-sized value, as Core's loop reads them (non-pushes have no data).
        .take_while(|op| valid_pubkey_size(op.data))
        .map(|op| op.data.to_vec())
        .collect();
    // After the keys: the key count, then OP_CHECKMULTISIG as the last operation.
    let tail = &rest[keys.len()..];
    let [count, last] = tail else { return None };
    if last.opcode != OP_CHECKMULTISIG {
        return None;
    }
    let count = script_number(count, required, MAX_PUBKEYS_PER_MULTISIG)?;
    if usize::try_from(count).ok()? != keys.len() {
        return None;
    }
    Some(ScriptKind::Multisig {
        required: u8::try_from(required).ok()?,
        keys,
    })
}

/// Core's `CScript::IsWitnessProgram`: version and program, if the script is one.
fn witness_program(script: &[u8]) -> Option<(u8, &[u8])> {
    if !(4..=42).contains(&script.len()) {
        return None;
    }
    let version = match script[0] {
        OP_0 => 0,
        op @ OP_1..=OP_16 => op - OP_1 + 1,
        _ => return None,
    };
    (usize::from(script[1]) + 2 == script.len()).then(|| (version, &script[2..]))
}

/// Core's `Solver`: the template of `script`.
pub fn classify(script: &Script) -> ScriptKind {
    let s = script.as_bytes();
    if s.len() == 23 && s[0] == OP_HASH160 && s[1] == 20 && s[22] == OP_EQUAL {
        return ScriptKind::ScriptHash;
    }
    if let Some((version, program)) = witness_program(s) {
        return match (version, program.len()) {
            (0, 20) => ScriptKind::WitnessV0KeyHash,
            (0, 32) => ScriptKind::WitnessV0ScriptHash,
            (1, 32) => ScriptKind::WitnessV1Taproot(program.try_into().expect("32 bytes")),
            (1, 2) if program == [0x4e, 0x73] => ScriptKind::Anchor,
            (0, _) => ScriptKind::NonStandard,
            _ => ScriptKind::WitnessUnknown,
        };
    }
    if s.first() == Some(&OP_RETURN) {
        let push_only = ops(&s[1..]).is_some_and(|ops| ops.iter().all(|op| op.opcode <= OP_16));
        if push_only {
            return ScriptKind::NullData;
        }
    }
    for key_len in [33, 65] {
        if s.len() == key_len + 2
            && usize::from(s[0]) == key_len
            && s[key_len + 1] == OP_CHECKSIG
            && valid_pubkey_size(&s[1..=key_len])
        {
            return ScriptKind::PubKey(s[1..=key_len].to_vec());
        }
    }
    if s.len() == 25
        && s[..3] == [OP_DUP, OP_HASH160, 20]
        && s[23] == OP_EQUALVERIFY
        && s[24] == OP_CHECKSIG
    {
        return ScriptKind::PubKeyHash(s[3..23].try_into().expect("20 bytes"));
    }
    match_multisig(s).unwrap_or(ScriptKind::NonStandard)
}

/// BIP-380's input characters, in its three groups of 32 (the order is part of the checksum).
const INPUT_CHARSET: &[u8] =
    b"0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";
/// BIP-380's checksum characters (bech32's).
const CHECKSUM_CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
/// Characters of a descriptor checksum.
pub const CHECKSUM_LEN: usize = 8;

/// BIP-380's generator step (`descsum_polymod` for one symbol).
fn polymod(c: u64, value: u64) -> u64 {
    const GENERATOR: [u64; 5] = [
        0xf5dee51989,
        0xa9fdca3312,
        0x1bab10e32d,
        0x3706b1677a,
        0x644d626ffd,
    ];
    let top = c >> 35;
    let mut c = ((c & 0x7_ffff_ffff) << 5) ^ value;
    for (bit, generator) in GENERATOR.iter().enumerate() {
        if (top >> bit) & 1 == 1 {
            c ^= generator;
        }
    }
    c
}

/// The BIP-380 checksum of `descriptor` (without `#`), or `None` if it has a character
/// descriptors may not contain.
pub fn checksum(descriptor: &str) -> Option<String> {
    let mut c = 1u64;
    let mut class = 0u64;
    let mut class_count = 0;
    for ch in descriptor.bytes() {
        let position = INPUT_CHARSET.iter().position(|&x| x == ch)? as u64;
        c = polymod(c, position & 31);
        class = class * 3 + (position >> 5);
        class_count += 1;
        if class_count == 3 {
            c = polymod(c, class);
            class = 0;
            class_count = 0;
        }
    }
    if class_count > 0 {
        c = polymod(c, class);
    }
    for _ in 0..CHECKSUM_LEN {
        c = polymod(c, 0);
    }
    c ^= 1;
    Some(
        (0..CHECKSUM_LEN)
            .map(|j| char::from(CHECKSUM_CHARSET[((c >> (5 * (7 - j))) & 31) as usize]))
            .collect(),
    )
}

/// `descriptor#checksum`. Every descriptor built here uses only hex, digits, letters, commas
/// and parentheses, all in BIP-380's character set.
fn with_checksum(descriptor: String) -> String {
    let sum = checksum(&descriptor).expect("descriptors built here use BIP-380 characters");
    format!("{descriptor}#{sum}")
}

/// Where a script sits, for the key rules of inference (Core's `ParseScriptContext`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Top,
    P2wsh,
}

/// A key usable in `context` (Core's `InferPubkey`): not hybrid, and compressed inside P2WSH.
fn key_text(key: &[u8], context: Context) -> Option<String> {
    let usable = non_hybrid_pubkey(key) && (context == Context::Top || key.len() == 33);
    usable.then(|| hex::encode(key))
}

/// Core's `InferScript` without known keys or scripts, for the templates it infers without them;
/// `None` where Core falls through to `addr()` or `raw()`.
fn infer_keyed(kind: &ScriptKind, context: Context) -> Option<String> {
    match kind {
        ScriptKind::PubKey(key) => Some(format!("pk({})", key_text(key, context)?)),
        ScriptKind::Multisig { required, keys } => {
            let keys: Vec<String> = keys
                .iter()
                .map(|k| key_text(k, context))
                .collect::<Option<_>>()?;
            Some(format!("multi({required},{})", keys.join(",")))
        }
        ScriptKind::WitnessV1Taproot(key) if context == Context::Top => {
            // `rawtr()` only for a key on the curve (Core's `XOnlyPublicKey::IsFullyValid`).
            bitcoin::secp256k1::XOnlyPublicKey::from_slice(key)
                .ok()
                .map(|_| format!("rawtr({})", hex::encode(key)))
        }
        _ => None,
    }
}

/// `addr()` for a script that is exactly an address's, else `raw()`.
fn addr_or_raw(script: &Script, network: Network) -> String {
    match Address::from_script(script, network) {
        Ok(address) if address.script_pubkey() == *script => format!("addr({address})"),
        _ => format!("raw({})", hex::encode(script.as_bytes())),
    }
}

/// The descriptor Core infers for a top-level output script knowing no keys or scripts
/// (`InferDescriptor(script, DUMMY_SIGNING_PROVIDER)`), with its checksum: `pk()`, `multi()`,
/// `rawtr()`, `addr()` or `raw()`.
pub fn infer(script: &Script, network: Network) -> String {
    let kind = classify(script);
    with_checksum(infer_keyed(&kind, Context::Top).unwrap_or_else(|| addr_or_raw(script, network)))
}

/// The descriptor of `p2wsh`, the P2WSH output of `witness_script`, knowing that script (as
/// `decodescript` does for its `segwit` member): `wsh(pk())` or `wsh(multi())` where the script
/// is one, else `addr()` of the output.
fn infer_p2wsh(p2wsh: &Script, witness_script: &Script, network: Network) -> String {
    let inner = infer_keyed(&classify(witness_script), Context::P2wsh);
    with_checksum(match inner {
        Some(inner) => format!("wsh({inner})"),
        None => addr_or_raw(p2wsh, network),
    })
}

/// Core's `IsOpSuccess` for opcodes up to [`MAX_OPCODE`] (all above it are invalid anyway).
fn is_op_success(opcode: u8) -> bool {
    matches!(opcode, 80 | 98 | 126..=129 | 131..=134 | 137..=138 | 141..=142 | 149..=153)
}

/// Whether `decodescript` shows the P2SH wrapping of a script (Core 28's `can_wrap`).
fn can_wrap_p2sh(script: &[u8], kind: &ScriptKind) -> bool {
    let wrappable = matches!(
        kind,
        ScriptKind::Multisig { .. }
            | ScriptKind::NonStandard
            | ScriptKind::PubKey(_)
            | ScriptKind::PubKeyHash(_)
            | ScriptKind::WitnessV0KeyHash
            | ScriptKind::WitnessV0ScriptHash
    );
    let unspendable = script.first() == Some(&OP_RETURN) || script.len() > MAX_SCRIPT_SIZE;
    // `HasValidOps`, and no OP_CHECKSIGADD or OP_SUCCESS (both above MAX_OPCODE or listed).
    let valid_ops = ops(script).is_some_and(|ops| {
        ops.iter().all(|op| {
            op.opcode <= MAX_OPCODE
                && op.data.len() <= MAX_SCRIPT_ELEMENT_SIZE
                && !is_op_success(op.opcode)
        })
    });
    wrappable && !unspendable && valid_ops
}

/// The segwit output `decodescript` shows for a script (Core 28's `can_wrap_P2WSH` and what
/// follows): P2WPKH of the key for P2PK and P2PKH, P2WSH for the rest; `None` for scripts
/// that segwit cannot wrap (witness programs, and uncompressed keys).
fn segwit_wrapping(script: &Script, kind: &ScriptKind) -> Option<ScriptBuf> {
    match kind {
        ScriptKind::PubKey(key) if key.len() == 33 => Some(ScriptBuf::new_p2wpkh(
            &WPubkeyHash::from_byte_array(hash160::Hash::hash(key).to_byte_array()),
        )),
        ScriptKind::PubKeyHash(hash) => {
            Some(ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array(*hash)))
        }
        ScriptKind::Multisig { keys, .. } if keys.iter().all(|k| k.len() == 33) => {
            Some(ScriptBuf::new_p2wsh(&script.wscript_hash()))
        }
        ScriptKind::NonStandard => Some(ScriptBuf::new_p2wsh(&script.wscript_hash())),
        _ => None,
    }
}

/// The P2SH address of any script (Core does not limit the script's size here).
fn p2sh_address(script: &Script, network: Network) -> String {
    Address::p2sh_from_hash(script.script_hash(), network).to_string()
}

/// What `decodescript` adds to a script's decoding beyond `asm`, `type` and `address`: `desc`,
/// and the `p2sh` and `segwit` wrappings Core 28 shows.
pub fn decodescript_extras(
    script: &Script,
    network: Network,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Value};
    let kind = classify(script);
    let mut out = serde_json::Map::new();
    out.insert("desc".into(), json!(infer(script, network)));
    if !can_wrap_p2sh(script.as_bytes(), &kind) {
        return out;
    }
    out.insert("p2sh".into(), json!(p2sh_address(script, network)));
    if let Some(segwit) = segwit_wrapping(script, &kind) {
        let mut object = serde_json::Map::new();
        object.insert("asm".into(), json!(segwit.to_asm_string()));
        object.insert("hex".into(), json!(hex::encode(segwit.as_bytes())));
        object.insert("type".into(), json!(classify(&segwit).core_name()));
        if let Ok(address) = Address::from_script(&segwit, network) {
            object.insert("address".into(), json!(address.to_string()));
        }
        let desc = if segwit.is_p2wsh() {
            infer_p2wsh(&segwit, script, network)
        } else {
            infer(&segwit, network)
        };
        object.insert("desc".into(), json!(desc));
        object.insert("p2sh-segwit".into(), json!(p2sh_address(&segwit, network)));
        out.insert("segwit".into(), Value::Object(object));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(hex_text: &str) -> ScriptBuf {
        ScriptBuf::from_bytes(hex::decode(hex_text).unwrap())
    }

    #[test]
    fn checksums_match_bip380_and_core() {
        // BIP-380's test vector, then descriptors Bitcoin Core printed (regtest, testnet).
        for with_sum in [
            "raw(deadbeef)#89f8spxm",
            "addr(bcrt1q7e4uc7mz8rhl0e2g25a3jcguydxale9yrnl4cz)#xps6m4ne",
            "addr(bcrt1qv4mkpjsp2967gtl4k3rs2caj8tw0p55h8gzsdgtk54tfdyxkgsmsvc0c37)#xfhwt3ez",
            "rawtr(9bcbd366c542d77635150211f6283d3ff4d9979d312cdf42e4bbd047aa77d961)#q2ud38tc",
            "raw(6a024869)#nz6xdglz",
            "raw(6351670068)#fhsnu8qg",
            "pk(03c8edf725b59d9f370870a5dcd5e70b0baea493a5b85cb227c1ef6a8e8cdad8fb)#uyjfg78q",
            "multi(2,03262802797e4a68f1b213d2d781e0ec24a404aea09837931aea0a95a1e0b524fb,0256dd26ef322b12a5fa823d97455d2fa99b1b18940afe18ddfcdb05762674b393,03d9a61a19c36661a50a9da518df397173c284d22e9e69348cfded0fcf7eb74be4,021b3afa8c5659391d79311f11ac4b276605932d71f93713e260b72a289b9d3988)#u9s67nn4",
        ] {
            let (descriptor, sum) = with_sum.split_once('#').unwrap();
            assert_eq!(checksum(descriptor).as_deref(), Some(sum), "{descriptor}");
        }
        // BIP-380: a character outside the set has no checksum.
        assert_eq!(checksum("raw(Ü)"), None);
        assert_ne!(checksum("raw(deadbeef)"), checksum("raw(deadbeee)"));
    }

    #[test]
    fn templates_have_cores_names() {
        let cases = [
            (
                "0014f66bcc7b6238eff7e548553b19611c234ddfe4a4",
                "witness_v0_keyhash",
            ),
            (
                "0020657760ca015175e42ff5b4470563b23adcf0d2973a0506a176a5569690d64437",
                "witness_v0_scripthash",
            ),
            (
                "51209bcbd366c542d77635150211f6283d3ff4d9979d312cdf42e4bbd047aa77d961",
                "witness_v1_taproot",
            ),
            ("51024e73", "anchor"),
            ("5202abcd", "witness_unknown"),
            (
                "0015000102030405060708090a0b0c0d0e0f1011121314",
                "nonstandard",
            ),
            (
                "76a914d5b20531701831678f620f33d3127b8dfe20b67288ac",
                "pubkeyhash",
            ),
            (
                "a914d5b20531701831678f620f33d3127b8dfe20b67287",
                "scripthash",
            ),
            ("6a024869", "nulldata"),
            ("6a", "nulldata"),
            // OP_RETURN followed by a non-push is not null data.
            ("6aac", "nonstandard"),
            (
                "2103c8edf725b59d9f370870a5dcd5e70b0baea493a5b85cb227c1ef6a8e8cdad8fbac",
                "pubkey",
            ),
            ("6351670068", "nonstandard"),
            ("", "nonstandard"),
            // A push running past the end.
            ("4c05ab", "nonstandard"),
        ];
        for (hex_text, name) in cases {
            assert_eq!(classify(&script(hex_text)).core_name(), name, "{hex_text}");
        }
        let multisig = script("522103262802797e4a68f1b213d2d781e0ec24a404aea09837931aea0a95a1e0b524fb210256dd26ef322b12a5fa823d97455d2fa99b1b18940afe18ddfcdb05762674b39352ae");
        assert!(matches!(
            classify(&multisig),
            ScriptKind::Multisig { required: 2, ref keys } if keys.len() == 2
        ));
        // Key count that does not match the keys.
        let wrong_count =
            script("522103262802797e4a68f1b213d2d781e0ec24a404aea09837931aea0a95a1e0b524fb53ae");
        assert_eq!(classify(&wrong_count), ScriptKind::NonStandard);
    }

    /// Core 28's `decodescript` of `script` on regtest, as printed by bitcoind (asm aside).
    #[test]
    fn decodescript_extras_match_core() {
        let p2pk = script("2103c8edf725b59d9f370870a5dcd5e70b0baea493a5b85cb227c1ef6a8e8cdad8fbac");
        let extras = decodescript_extras(&p2pk, Network::Regtest);
        assert_eq!(
            extras["desc"],
            "pk(03c8edf725b59d9f370870a5dcd5e70b0baea493a5b85cb227c1ef6a8e8cdad8fb)#uyjfg78q"
        );
        assert_eq!(extras["p2sh"], "2N5qkyrMHFs2owkwkf76d55YmSMTX5YJa58");
        let segwit = &extras["segwit"];
        assert_eq!(
            segwit["hex"],
            "00142179dbd7258824b83b13e6190efdc302723183ec"
        );
        assert_eq!(segwit["type"], "witness_v0_keyhash");
        assert_eq!(
            segwit["address"],
            "bcrt1qy9uah4e93qjtswcnucvsalwrqferrqlvzrgycj"
        );
        assert_eq!(
            segwit["desc"],
            "addr(bcrt1qy9uah4e93qjtswcnucvsalwrqferrqlvzrgycj)#mjpsey9y"
        );
        assert_eq!(segwit["p2sh-segwit"], "2N3h5LwNuYMcRzWziqSDTmB7o67QDDN1Z9W");

        // A non-standard script (an x-only key, CHECKSIGVERIFY, 1008 CSV): raw() at the top,
        // and its P2WSH is no miniscript with P2WSH keys, so addr().
        let csv =
            script("203e61dd9b70d4f6d5a2c30f955995b4186f0374c781a69cbbce244b7140d24281ad02f003b2");
        let extras = decodescript_extras(&csv, Network::Regtest);
        assert_eq!(
            extras["desc"],
            "raw(203e61dd9b70d4f6d5a2c30f955995b4186f0374c781a69cbbce244b7140d24281ad02f003b2)#fejnhmtz"
        );
        assert_eq!(extras["p2sh"], "2Mz33BjfVVrtbU9QxVxWRXbYUXE3uv6F9ky");
        assert_eq!(
            extras["segwit"]["desc"],
            "addr(bcrt1qqw3mw734w4x6fy68pxjpe86wkrsaz6y4h278fsg2gdcn0lrrt46sn4yvyt)#ffm9cu7e"
        );
        assert_eq!(
            extras["segwit"]["p2sh-segwit"],
            "2N73zbbYpJEqUx2f8J8brjysKWPGbUW9DRx"
        );

        // Bare multisig of compressed keys: multi() at the top, wsh(multi()) for its P2WSH
        // (Core 28 infers the witness script it wraps).
        let keys = [
            "03262802797e4a68f1b213d2d781e0ec24a404aea09837931aea0a95a1e0b524fb",
            "0256dd26ef322b12a5fa823d97455d2fa99b1b18940afe18ddfcdb05762674b393",
            "03d9a61a19c36661a50a9da518df397173c284d22e9e69348cfded0fcf7eb74be4",
            "021b3afa8c5659391d79311f11ac4b276605932d71f93713e260b72a289b9d3988",
        ];
        let multisig = script(&format!(
            "52{}54ae",
            keys.iter().map(|k| format!("21{k}")).collect::<String>()
        ));
        let extras = decodescript_extras(&multisig, Network::Regtest);
        let multi = format!("multi(2,{})", keys.join(","));
        assert_eq!(extras["desc"], format!("{multi}#u9s67nn4"));
        assert_eq!(extras["p2sh"], "2NB44HwwETgMk9CCEAXzhcmBFTTvwC1rv4U");
        let segwit = &extras["segwit"];
        assert_eq!(
            segwit["address"],
            "bcrt1qlruq2yg9kh7tdkdmq2gdeqee8ncj93x4xl9mghp4hxrp7f6fhgnsfx49g7"
        );
        let wsh = format!("wsh({multi})");
        assert_eq!(segwit["desc"], format!("{wsh}#{}", checksum(&wsh).unwrap()));
        assert_eq!(segwit["p2sh-segwit"], "2MzoTPqsrzMsgZ6AssP48AKLNpNCfAqmP2p");
    }

    #[test]
    fn witness_programs_and_null_data_get_no_wrapping() {
        for (hex_text, desc) in [
            (
                "0014f66bcc7b6238eff7e548553b19611c234ddfe4a4",
                "addr(bcrt1q7e4uc7mz8rhl0e2g25a3jcguydxale9yrnl4cz)#xps6m4ne",
            ),
            (
                "51209bcbd366c542d77635150211f6283d3ff4d9979d312cdf42e4bbd047aa77d961",
                "rawtr(9bcbd366c542d77635150211f6283d3ff4d9979d312cdf42e4bbd047aa77d961)#q2ud38tc",
            ),
            ("6a024869", "raw(6a024869)#nz6xdglz"),
        ] {
            let extras = decodescript_extras(&script(hex_text), Network::Regtest);
            assert_eq!(extras["desc"], desc);
            assert!(extras.get("segwit").is_none(), "{hex_text}");
        }
        // P2WPKH is wrapped in P2SH (P2SH-P2WPKH) but not again in segwit; P2TR is neither.
        let p2wpkh = decodescript_extras(
            &script("0014f66bcc7b6238eff7e548553b19611c234ddfe4a4"),
            Network::Regtest,
        );
        assert!(p2wpkh.get("p2sh").is_some());
        let p2tr = decodescript_extras(
            &script("51209bcbd366c542d77635150211f6283d3ff4d9979d312cdf42e4bbd047aa77d961"),
            Network::Regtest,
        );
        assert!(p2tr.get("p2sh").is_none());
        // A taproot output key off the curve (BIP-340's test vector 5) is no rawtr(): addr().
        let off_curve =
            script("5120eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34");
        assert!(infer(&off_curve, Network::Regtest).starts_with("addr(bcrt1p"));
    }
}
