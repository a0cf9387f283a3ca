#!/usr/bin/env python3
"""Stock Python Bitcoin Core clients against a live trainchain node.

Driven by crates/node/tests/python_clients.rs (run it with scripts/core-clients-python): the
test starts a node with mined blocks, then runs this script twice.

  core_clients.py --url URL send --wif WIF --outpoint TXID:N --value SATS --blocks N
      Calls every Core method of issue 15 with python-bitcoinlib's stock `RawProxy` and `Proxy`
      and bitcoin-utils' `NodeProxy`, checks each answer has the fields Core documents and parses
      into what the library expects, then builds and signs (BIP143, SIGHASH_ALL) a P2WPKH
      transaction spending OUTPOINT with python-bitcoinlib, sends it, and prints
      `{"txid": ..., "hex": ...}` as the last line of stdout.
  core_clients.py --url URL confirmed --txid TXID --height H
      After the test mined a block with it: checks all clients see TXID confirmed at H.

URL is `http://user:password@host:port/`. Regtest parameters throughout (the devnet's `chain`).

Not called: `Proxy.getblock` and `Proxy.getblockheader(verbose=False)`, which parse raw block and
header hex as Bitcoin's 80-byte header. A trainchain header is longer (it carries the
coordinator-signed certificate) and a block carries a producer signature, so raw block/header
hex needs a trainchain-aware parser (docs/protocol.md). Raw *transaction* hex is Bitcoin's and
is parsed here by both libraries. `Proxy.getinfo` is not called either: Core removed `getinfo`
in 0.16 and the node, serving Core 28's method set, does not have it.
"""

import argparse
import decimal
import hashlib
import json
import sys
import urllib.parse

import bitcoin
import bitcoin.rpc
from bitcoin.core import (
    COIN,
    COutPoint,
    CMutableTransaction,
    CMutableTxIn,
    CMutableTxOut,
    CTransaction,
    CTxInWitness,
    CTxWitness,
    Hash160,
    b2lx,
    b2x,
    lx,
    x,
)
from bitcoin.core.script import (
    OP_0,
    OP_CHECKSIG,
    OP_DUP,
    OP_EQUALVERIFY,
    OP_HASH160,
    SIGHASH_ALL,
    SIGVERSION_WITNESS_V0,
    CScript,
    CScriptWitness,
    SignatureHash,
)
from bitcoin.wallet import CBitcoinAddress, CBitcoinSecret, P2WPKHBitcoinAddress

import bitcoinutils.setup
from bitcoinutils.proxy import NodeProxy
from bitcoinutils.transactions import Transaction as UtilsTransaction

FEE_SATS = 10_000
# Issue 15's list: every one is called, through all three clients where it reads the chain.
ISSUE_15_METHODS = {
    "getblockchaininfo", "getblockcount", "getbestblockhash", "getblockhash", "getblockheader",
    "getblock", "getrawtransaction", "gettxout", "getmempoolinfo", "getrawmempool",
    "getpeerinfo", "getnetworkinfo", "estimatesmartfee", "validateaddress",
    "decoderawtransaction", "decodescript", "testmempoolaccept", "getmempoolentry",
    "getchaintips", "getconnectioncount", "getdifficulty", "getmininginfo", "gettxoutsetinfo",
    "help", "sendrawtransaction",
}
HEX64 = "0123456789abcdef"

failures = []
calls = set()


def fail(message):
    failures.append(message)
    print(f"FAIL {message}", flush=True)


def check(condition, message):
    if not condition:
        fail(message)
    return condition


def has_fields(what, value, fields):
    """Core's documented fields are all present in the object `value`."""
    if not check(isinstance(value, dict), f"{what}: not an object: {value!r}"):
        return False
    missing = [f for f in fields if f not in value]
    return check(not missing, f"{what}: lacks {missing}: {json.dumps(value, default=str)[:600]}")


def is_hash(value):
    return isinstance(value, str) and len(value) == 64 and all(c in HEX64 for c in value)


def is_amount(value):
    # python-bitcoinlib and bitcoin-utils parse JSON numbers with a fraction as Decimal.
    return isinstance(value, (int, decimal.Decimal)) and not isinstance(value, bool)


class Clients:
    """One of each stock client, all on the same node."""

    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        bitcoin.SelectParams("regtest")
        bitcoinutils.setup.setup("regtest")
        self.raw = bitcoin.rpc.RawProxy(service_url=url)
        self.proxy = bitcoin.rpc.Proxy(service_url=url)
        self.utils = NodeProxy(
            urllib.parse.unquote(parsed.username),
            urllib.parse.unquote(parsed.password),
            host=parsed.hostname,
            port=parsed.port,
            max_retries=0,
        )

    def each(self, method, *params):
        """`method` through RawProxy and NodeProxy; both answers, which must agree."""
        calls.add(method)
        raw = getattr(self.raw, method)(*params)
        utils = getattr(self.utils, method)(*params)
        check(raw == utils, f"{method}{params}: RawProxy and NodeProxy disagree: {raw!r} {utils!r}")
        return raw


HEADER_FIELDS = ["hash", "confirmations", "height", "version", "versionHex", "merkleroot",
                 "time", "mediantime", "nonce", "bits", "difficulty", "chainwork", "nTx"]
TX_FIELDS = ["txid", "hash", "version", "size", "vsize", "weight", "locktime", "vin", "vout"]
SCRIPT_PUBKEY_FIELDS = ["asm", "hex", "type"]
MEMPOOL_ENTRY_FIELDS = ["vsize", "weight", "time", "height", "descendantcount",
                        "descendantsize", "ancestorcount", "ancestorsize", "wtxid", "fees",
                        "depends", "spentby", "bip125-replaceable", "unbroadcast"]


def check_tx(what, tx):
    if not has_fields(what, tx, TX_FIELDS):
        return
    for i, out in enumerate(tx["vout"]):
        has_fields(f"{what}.vout[{i}]", out, ["value", "n", "scriptPubKey"])
        check(is_amount(out.get("value")), f"{what}.vout[{i}].value is not an amount")
        has_fields(f"{what}.vout[{i}].scriptPubKey", out.get("scriptPubKey"),
                   SCRIPT_PUBKEY_FIELDS)
    for i, vin in enumerate(tx["vin"]):
        check(isinstance(vin, dict) and "sequence" in vin, f"{what}.vin[{i}]: {vin!r}")


def read_chain(c, blocks):
    """Every read-only method of issue 15, before any transaction."""
    info = c.each("getblockchaininfo")
    has_fields("getblockchaininfo", info,
               ["chain", "blocks", "headers", "bestblockhash", "difficulty", "mediantime",
                "verificationprogress", "initialblockdownload", "chainwork", "size_on_disk",
                "pruned", "warnings"])
    check(info.get("chain") == "regtest", f"getblockchaininfo.chain {info.get('chain')!r}")
    check(info.get("blocks") == blocks, f"getblockchaininfo.blocks {info.get('blocks')}")

    count = c.each("getblockcount")
    check(count == blocks and c.proxy.getblockcount() == blocks, f"getblockcount {count}")
    best = c.each("getbestblockhash")
    check(is_hash(best), f"getbestblockhash {best!r}")
    check(c.proxy.getbestblockhash() == lx(best), "Proxy.getbestblockhash")
    check(c.each("getblockhash", blocks) == best, "getblockhash(tip) != getbestblockhash")
    check(c.proxy.getblockhash(blocks) == lx(best), "Proxy.getblockhash")
    try:
        c.proxy.getblockhash(blocks + 100)
        fail("Proxy.getblockhash past the tip did not raise IndexError")
    except IndexError:
        pass  # Core's -8, mapped by python-bitcoinlib to IndexError

    first = c.each("getblockhash", 1)
    header = c.each("getblockheader", first, True)
    has_fields("getblockheader", header, HEADER_FIELDS + ["nextblockhash"])
    check(header.get("height") == 1, "getblockheader.height")
    typed = c.proxy.getblockheader(lx(first), verbose=True)
    check(typed["height"] == 1 and typed["confirmations"] == blocks, f"Proxy.getblockheader {typed}")
    check(typed["chainwork"] == x(header["chainwork"]), "Proxy.getblockheader chainwork")
    check(typed["nextblockhash"] == lx(c.raw.getblockhash(2)), "Proxy.getblockheader next")
    try:
        c.proxy.getblockheader(b"\x00" * 32, verbose=True)
        fail("Proxy.getblockheader(unknown) did not raise IndexError")
    except IndexError:
        pass  # Core's -5

    block = c.each("getblock", first, 1)
    has_fields("getblock", block, HEADER_FIELDS + ["size", "strippedsize", "weight", "tx"])
    check(block.get("tx") and all(is_hash(t) for t in block["tx"]), "getblock(1).tx: txids")
    coinbase_txid = block["tx"][0]

    raw_tx = c.each("getrawtransaction", coinbase_txid, True, first)
    check_tx("getrawtransaction", raw_tx)
    check(raw_tx.get("blockhash") == first and "hex" in raw_tx, "getrawtransaction blockhash/hex")
    typed = c.proxy.getrawtransaction(lx(coinbase_txid), verbose=True, block_hash=lx(first))
    check(isinstance(typed["tx"], CTransaction) and typed["tx"].GetTxid() == lx(coinbase_txid),
          "Proxy.getrawtransaction(verbose) parses into the coinbase")
    check(typed["blockhash"] == lx(first), "Proxy.getrawtransaction blockhash")
    plain = c.proxy.getrawtransaction(lx(coinbase_txid), block_hash=lx(first))
    check(plain.is_coinbase(), "Proxy.getrawtransaction: a coinbase")
    check(UtilsTransaction.from_raw(raw_tx["hex"]).get_txid() == coinbase_txid,
          "bitcoin-utils Transaction.from_raw(coinbase) txid")

    out = c.each("gettxout", coinbase_txid, 0)
    has_fields("gettxout", out, ["bestblock", "confirmations", "value", "scriptPubKey", "coinbase"])
    check(out.get("coinbase") is True and out.get("bestblock") == best, f"gettxout {out}")
    typed = c.proxy.gettxout(COutPoint(lx(coinbase_txid), 0))
    check(typed["txout"].nValue == int(out["value"] * COIN), "Proxy.gettxout value")
    check(typed["confirmations"] == blocks, "Proxy.gettxout confirmations")

    pool = c.each("getmempoolinfo")
    has_fields("getmempoolinfo", pool,
               ["loaded", "size", "bytes", "usage", "total_fee", "maxmempool", "mempoolminfee",
                "minrelaytxfee", "incrementalrelayfee", "unbroadcastcount"])
    check(c.each("getrawmempool") == [] and c.proxy.getrawmempool() == [], "getrawmempool empty")
    check(c.each("getrawmempool", True) == {}, "getrawmempool(verbose) empty")
    check(c.each("getpeerinfo") == [], "getpeerinfo: no peers")
    check(c.each("getconnectioncount") == 0, "getconnectioncount")

    net = c.each("getnetworkinfo")
    has_fields("getnetworkinfo", net,
               ["version", "subversion", "protocolversion", "localservices",
                "localservicesnames", "localrelay", "timeoffset", "networkactive",
                "connections", "connections_in", "connections_out", "networks", "relayfee",
                "incrementalfee", "localaddresses", "warnings"])
    check(isinstance(net.get("version"), int), "getnetworkinfo.version is an integer")
    check(is_amount(net.get("relayfee")), "getnetworkinfo.relayfee is an amount")
    for n in net.get("networks", []):
        has_fields("getnetworkinfo.networks[]", n,
                   ["name", "limited", "reachable", "proxy", "proxy_randomize_credentials"])

    fee = c.each("estimatesmartfee", 6)
    check(isinstance(fee, dict) and fee.get("blocks") == 6, f"estimatesmartfee {fee}")
    check("feerate" in fee or "errors" in fee, "estimatesmartfee: feerate or errors")
    if "feerate" in fee:
        check(is_amount(fee["feerate"]) and fee["feerate"] > 0, "estimatesmartfee.feerate")

    tips = c.each("getchaintips")
    check(isinstance(tips, list) and len(tips) == 1, f"getchaintips {tips}")
    has_fields("getchaintips[0]", tips[0], ["height", "hash", "branchlen", "status"])
    check(tips[0].get("hash") == best and tips[0].get("status") == "active", "getchaintips tip")
    difficulty = c.each("getdifficulty")
    check(is_amount(difficulty), f"getdifficulty {difficulty!r}")
    mining = c.each("getmininginfo")
    has_fields("getmininginfo", mining,
               ["blocks", "difficulty", "networkhashps", "pooledtx", "chain", "warnings"])
    check(c.proxy.getmininginfo().get("blocks") == blocks, "Proxy.getmininginfo")
    utxos = c.each("gettxoutsetinfo")
    has_fields("gettxoutsetinfo", utxos,
               ["height", "bestblock", "txouts", "bogosize", "hash_serialized_3",
                "total_amount", "transactions", "disk_size"])
    check(utxos.get("height") == blocks and utxos.get("bestblock") == best, "gettxoutsetinfo tip")
    text = c.each("help")
    check(isinstance(text, str) and "getblockchaininfo" in text, "help lists the methods")
    check(isinstance(c.each("help", "getblock"), str), "help getblock")

    return coinbase_txid


def p2wpkh_script(pub):
    return CScript([OP_0, Hash160(pub)])


def build_spend(secret, outpoint, value):
    """A P2WPKH spend of `outpoint` (worth `value` sats, paid to `secret`'s P2WPKH) to a fresh
    key, signed as BIP143 (segwit v0) with SIGHASH_ALL."""
    to_secret = CBitcoinSecret.from_secret_bytes(hashlib.sha256(b"python clients").digest())
    txin = CMutableTxIn(outpoint, nSequence=0xFFFFFFFF)
    txout = CMutableTxOut(value - FEE_SATS, p2wpkh_script(to_secret.pub))
    tx = CMutableTransaction([txin], [txout], nLockTime=0, nVersion=2)
    # BIP143: P2WPKH's script code is the P2PKH script of the key hash.
    script_code = CScript([OP_DUP, OP_HASH160, Hash160(secret.pub), OP_EQUALVERIFY, OP_CHECKSIG])
    sighash = SignatureHash(script_code, tx, 0, SIGHASH_ALL, amount=value,
                            sigversion=SIGVERSION_WITNESS_V0)
    signature = secret.sign(sighash) + bytes([SIGHASH_ALL])
    tx.wit = CTxWitness([CTxInWitness(CScriptWitness([signature, secret.pub]))])
    return CTransaction.from_tx(tx), to_secret


def send(c, args):
    read_chain(c, args.blocks)
    secret = CBitcoinSecret(args.wif)
    txid_hex, vout = args.outpoint.split(":")
    outpoint = COutPoint(lx(txid_hex), int(vout))
    prev = c.proxy.gettxout(outpoint)["txout"]
    check(prev.nValue == args.value, f"the coin is worth {prev.nValue}, not {args.value}")
    check(prev.scriptPubKey == p2wpkh_script(secret.pub), "the coin is not the key's P2WPKH")
    owner = P2WPKHBitcoinAddress.from_scriptPubKey(prev.scriptPubKey)

    valid = c.each("validateaddress", str(owner))
    has_fields("validateaddress", valid,
               ["isvalid", "address", "scriptPubKey", "isscript", "iswitness",
                "witness_version", "witness_program"])
    typed = c.proxy.validateaddress(owner)
    check(typed["isvalid"] and isinstance(typed["address"], CBitcoinAddress)
          and str(typed["address"]) == str(owner), f"Proxy.validateaddress {typed}")
    check(c.each("validateaddress", "not an address").get("isvalid") is False,
          "validateaddress(garbage)")

    tx, to_secret = build_spend(secret, outpoint, args.value)
    tx_hex = b2x(tx.serialize())
    txid = b2lx(tx.GetTxid())
    check(UtilsTransaction.from_raw(tx_hex).get_txid() == txid,
          "bitcoin-utils parses python-bitcoinlib's transaction to the same txid")

    decoded = c.each("decoderawtransaction", tx_hex)
    check_tx("decoderawtransaction", decoded)
    check(decoded.get("txid") == txid, "decoderawtransaction.txid")
    check(decoded.get("hash") != txid, "decoderawtransaction.hash is the wtxid (a witness)")
    spk = decoded["vout"][0]["scriptPubKey"]
    check(spk.get("address") == str(P2WPKHBitcoinAddress.from_scriptPubKey(
        p2wpkh_script(to_secret.pub))), "decoderawtransaction address (bcrt1...)")
    script = c.each("decodescript", b2x(p2wpkh_script(to_secret.pub)))
    # Core 28 also has `desc`; neither library reads it, and the node does not give it yet.
    has_fields("decodescript", script, ["asm", "type", "address"])
    check(script.get("type") == "witness_v0_keyhash", f"decodescript.type {script.get('type')}")

    tested = c.each("testmempoolaccept", [tx_hex])
    check(isinstance(tested, list) and len(tested) == 1, f"testmempoolaccept {tested}")
    has_fields("testmempoolaccept[0]", tested[0], ["txid", "wtxid", "allowed", "vsize", "fees"])
    check(tested[0].get("allowed") is True, f"testmempoolaccept refused: {tested[0]}")
    check(tested[0].get("fees", {}).get("base") == decimal.Decimal(FEE_SATS) / COIN,
          "testmempoolaccept.fees.base")
    # A broken signature: Core's reject-reason, and -26 from sendrawtransaction.
    broken = CMutableTransaction.from_tx(tx)
    sig = bytearray(broken.wit.vtxinwit[0].scriptWitness.stack[0])
    sig[10] ^= 1
    broken.wit = CTxWitness([CTxInWitness(CScriptWitness([bytes(sig), secret.pub]))])
    refused = c.raw.testmempoolaccept([b2x(broken.serialize())])[0]
    check(refused.get("allowed") is False and "reject-reason" in refused, f"bad sig: {refused}")
    try:
        c.proxy.sendrawtransaction(broken)
        fail("sendrawtransaction of a bad signature was accepted")
    except bitcoin.rpc.JSONRPCError as e:
        check(e.error["code"] == -26, f"bad signature: Core's -26, got {e.error}")

    calls.add("sendrawtransaction")
    sent = c.proxy.sendrawtransaction(tx)
    check(sent == tx.GetTxid(), f"sendrawtransaction returned {b2lx(sent)}, built {txid}")

    entry = c.each("getmempoolentry", txid)
    has_fields("getmempoolentry", entry, MEMPOOL_ENTRY_FIELDS)
    has_fields("getmempoolentry.fees", entry.get("fees"),
               ["base", "modified", "ancestor", "descendant"])
    check(entry.get("fees", {}).get("base") == decimal.Decimal(FEE_SATS) / COIN, "entry fee")
    check(c.proxy.getrawmempool() == [tx.GetTxid()], "Proxy.getrawmempool")
    verbose = c.each("getrawmempool", True)
    check(list(verbose) == [txid] and verbose[txid] == entry, "getrawmempool(verbose)")
    check(c.each("getmempoolinfo").get("size") == 1, "getmempoolinfo.size")
    pooled = c.proxy.getrawtransaction(tx.GetTxid(), verbose=True)
    check(pooled["tx"].GetTxid() == tx.GetTxid() and pooled["blockhash"] is None,
          "Proxy.getrawtransaction(pooled)")
    check(c.proxy.getrawtransaction(tx.GetTxid()).serialize() == tx.serialize(),
          "Proxy.getrawtransaction round-trips the witness transaction")
    check(c.each("getmininginfo").get("pooledtx") == 1, "getmininginfo.pooledtx")
    return txid, tx_hex


def confirmed(c, args):
    calls.add("confirmed")
    best = c.each("getbestblockhash")
    check(c.each("getblockcount") == args.height, "the test's block is the tip")
    block = c.each("getblock", best, 1)
    check(args.txid in block.get("tx", []), f"getblock(tip).tx lacks {args.txid}")
    out = c.each("gettxout", args.txid, 0)
    has_fields("gettxout(new)", out, ["bestblock", "confirmations", "value", "scriptPubKey"])
    check(out.get("confirmations") == 1 and out.get("coinbase") is False, f"gettxout {out}")
    typed = c.proxy.gettxout(COutPoint(lx(args.txid), 0))
    check(typed["confirmations"] == 1, "Proxy.gettxout: confirmed once")
    mined = c.proxy.getrawtransaction(lx(args.txid), verbose=True, block_hash=lx(best))
    check(mined["blockhash"] == lx(best), "Proxy.getrawtransaction: in the tip block")
    check(c.proxy.getrawmempool() == [], "the pool is empty again")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://user:password@host:port/")
    sub = parser.add_subparsers(dest="phase", required=True)
    s = sub.add_parser("send")
    s.add_argument("--wif", required=True, help="regtest WIF of the coin's owner")
    s.add_argument("--outpoint", required=True, help="TXID:N of a mature P2WPKH coin")
    s.add_argument("--value", required=True, type=int, help="the coin's value in sats")
    s.add_argument("--blocks", required=True, type=int, help="the chain's height")
    f = sub.add_parser("confirmed")
    f.add_argument("--txid", required=True)
    f.add_argument("--height", required=True, type=int)
    args = parser.parse_args()

    c = Clients(args.url)
    result = {}
    try:
        if args.phase == "send":
            txid, tx_hex = send(c, args)
            result = {"txid": txid, "hex": tx_hex}
            missing = ISSUE_15_METHODS - calls
            check(not missing, f"methods not called: {sorted(missing)}")
        else:
            confirmed(c, args)
    except Exception as e:  # a client raising is a failure of the test, with its reason
        import traceback
        traceback.print_exc()
        fail(f"{type(e).__name__}: {e}")
    print(f"methods called: {' '.join(sorted(calls))}", flush=True)
    if failures:
        print(f"{len(failures)} check(s) failed", flush=True)
        sys.exit(1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
