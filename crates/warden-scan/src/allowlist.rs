//! The decision about pickle globals: an exact allowlist, optional named profiles, and a
//! block list that only decides how severe a finding is.
//!
//! The default allowlist is PyTorch's weights-only set (tensor rebuild functions,
//! storages of every dtype, dtypes, `torch.Size`, `collections.OrderedDict`, NumPy array
//! reconstruction, `_codecs.encode`, a handful of harmless builtins) plus what real
//! checkpoints legitimately carry (`argparse.Namespace`, `pathlib` paths, `datetime`).
//! Everything else is a finding. The block list never allows anything: it raises a
//! finding to `critical` when the global gives code execution, file, network, process
//! or import-machinery access.

use crate::Severity;

/// Python 2 module names that CPython's unpickler maps to Python 3 names for protocols
/// below 3 (`fix_imports=True`, the default). The mapping is applied before any check,
/// so `__builtin__.eval` is treated exactly like `builtins.eval`.
const PY2_MODULES: &[(&str, &str)] = &[
    ("__builtin__", "builtins"),
    ("copy_reg", "copyreg"),
    ("cPickle", "pickle"),
    ("commands", "subprocess"),
    ("exceptions", "builtins"),
    ("UserDict", "collections"),
    ("UserList", "collections"),
    ("UserString", "collections"),
    ("urllib2", "urllib.request"),
    ("urlparse", "urllib.parse"),
    ("httplib", "http.client"),
    ("SocketServer", "socketserver"),
    ("cStringIO", "io"),
    ("StringIO", "io"),
    ("Queue", "queue"),
    ("thread", "_thread"),
    ("dummy_thread", "_dummy_thread"),
    ("repr", "reprlib"),
    ("__main__", "__main__"),
];

/// Map a module name the way CPython's `fix_imports` does for old protocols.
pub fn normalize_module(module: &str) -> &str {
    PY2_MODULES
        .iter()
        .find(|(old, _)| *old == module)
        .map_or(module, |(_, new)| new)
}

const TORCH_STORAGES: &[&str] = &[
    "FloatStorage",
    "DoubleStorage",
    "HalfStorage",
    "BFloat16Storage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
    "ComplexFloatStorage",
    "ComplexDoubleStorage",
    "QUInt8Storage",
    "QInt8Storage",
    "QInt32Storage",
    "QUInt4x2Storage",
    "QUInt2x4Storage",
    "UntypedStorage",
    "TypedStorage",
];

const TORCH_DTYPES: &[&str] = &[
    "float32",
    "float",
    "float64",
    "double",
    "float16",
    "half",
    "bfloat16",
    "int64",
    "long",
    "int32",
    "int",
    "int16",
    "short",
    "int8",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "complex32",
    "chalf",
    "complex64",
    "cfloat",
    "complex128",
    "cdouble",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    // layouts and memory formats, which weights-only loading also accepts
    "strided",
    "sparse_coo",
    "sparse_csr",
    "sparse_csc",
    "sparse_bsr",
    "sparse_bsc",
    "_mkldnn",
    "contiguous_format",
    "channels_last",
    "channels_last_3d",
    "preserve_format",
    // types that appear as arguments of rebuild functions
    "Size",
    "Tensor",
    "device",
    "dtype",
    "layout",
    "memory_format",
];

/// Exact (module, name) pairs allowed by default.
const DEFAULT_PAIRS: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"),
    ("torch.serialization", "_get_layout"),
    ("torch.torch_version", "TorchVersion"),
    ("torch.storage", "UntypedStorage"),
    ("torch.storage", "TypedStorage"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("builtins", "object"),
    ("copyreg", "_reconstructor"),
    ("argparse", "Namespace"),
    ("pathlib", "Path"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("pathlib._local", "Path"),
    ("pathlib._local", "PosixPath"),
    ("pathlib._local", "WindowsPath"),
    ("pathlib._local", "PurePosixPath"),
    ("pathlib._local", "PureWindowsPath"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
];

/// NumPy dtype classes (`numpy.dtypes.Float32DType` …) that NumPy 2 pickles by name.
fn numpy_dtype_class(module: &str, name: &str) -> bool {
    module == "numpy.dtypes"
        && name.ends_with("DType")
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The `sklearn` profile: scikit-learn estimators, pipelines and their helpers inside
/// joblib files, with joblib's own array wrappers and the NumPy/SciPy types they carry.
fn sklearn_profile(module: &str, name: &str) -> bool {
    const PAIRS: &[(&str, &str)] = &[
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
        ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random.mtrand", "RandomState"),
        ("numpy.random._mt19937", "MT19937"),
        ("numpy.random._pcg64", "PCG64"),
        ("numpy", "float64"),
        ("numpy", "float32"),
        ("numpy", "int64"),
        ("numpy", "int32"),
        ("numpy", "bool_"),
        ("builtins", "float"),
        ("builtins", "int"),
    ];
    if PAIRS.iter().any(|&(m, n)| m == module && n == name) {
        return true;
    }
    // Estimator classes and the module-level functions they reference (loss
    // functions, scorers) live under `sklearn.`; test helpers and vendored code do not
    // count. Names must be plain identifiers (no dotted attribute walks).
    let plain = !name.is_empty()
        && !name.starts_with("__")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let sk = module.starts_with("sklearn.")
        && !module.contains("._testing")
        && !module.contains(".externals")
        && !module.contains(".tests");
    let scipy = module.starts_with("scipy.sparse.")
        && matches!(
            name,
            "csr_matrix" | "csc_matrix" | "coo_matrix" | "csr_array" | "csc_array" | "coo_array"
        );
    plain && (sk || scipy)
}

/// Named profiles the user can turn on with `--profile`.
pub const PROFILES: &[(&str, &str)] = &[(
    "sklearn",
    "scikit-learn estimators and pipelines in joblib files, joblib array wrappers",
)];

/// What the allowlist says about one global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// On the allowlist (default or an enabled profile).
    Allowed,
    /// Not allowed; the severity comes from the block list.
    Denied(Severity),
}

/// Decide about `module.name` (module already normalised) under the enabled profiles.
pub fn classify(module: &str, name: &str, profiles: &[String]) -> Verdict {
    if allowed(module, name, profiles) {
        Verdict::Allowed
    } else {
        Verdict::Denied(severity(module, name))
    }
}

fn allowed(module: &str, name: &str, profiles: &[String]) -> bool {
    if DEFAULT_PAIRS.iter().any(|&(m, n)| m == module && n == name) {
        return true;
    }
    if module == "torch._utils"
        && name.starts_with("_rebuild_")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return true;
    }
    if module == "torch" && (TORCH_STORAGES.contains(&name) || TORCH_DTYPES.contains(&name)) {
        return true;
    }
    if (module == "torch.cuda") && TORCH_STORAGES.contains(&name) {
        return true;
    }
    if numpy_dtype_class(module, name) {
        return true;
    }
    profiles
        .iter()
        .any(|p| p == "sklearn" && sklearn_profile(module, name))
}

/// Modules whose every member (and every submodule) is critical: code execution,
/// files, network, processes, import machinery, nested deserialization, debuggers.
const CRITICAL_MODULES: &[&str] = &[
    "os",
    "posix",
    "nt",
    "posixpath",
    "ntpath",
    "subprocess",
    "_posixsubprocess",
    "sys",
    "runpy",
    "importlib",
    "imp",
    "zipimport",
    "pkgutil",
    "site",
    "pty",
    "socket",
    "_socket",
    "socketserver",
    "ssl",
    "select",
    "shutil",
    "pickle",
    "_pickle",
    "pickletools",
    "dill",
    "cloudpickle",
    "joblib",
    "shelve",
    "marshal",
    "types",
    "ctypes",
    "_ctypes",
    "cffi",
    "code",
    "codeop",
    "pdb",
    "bdb",
    "timeit",
    "cProfile",
    "profile",
    "trace",
    "webbrowser",
    "pip",
    "setuptools",
    "distutils",
    "ensurepip",
    "venv",
    "asyncio",
    "idlelib",
    "lib2to3",
    "multiprocessing",
    "concurrent",
    "threading",
    "_thread",
    "signal",
    "http",
    "urllib",
    "requests",
    "httpx",
    "ftplib",
    "smtplib",
    "telnetlib",
    "poplib",
    "imaplib",
    "nntplib",
    "xmlrpc",
    "tempfile",
    "glob",
    "io",
    "_io",
    "fileinput",
    "tarfile",
    "zipfile",
    "sqlite3",
    "_winapi",
    "msvcrt",
    "winreg",
    "_osx_support",
    "doctest",
    "unittest",
    "test",
    "inspect",
    "gc",
    "linecache",
    "sysconfig",
    "platform",
    "uuid",
    "operator",
    "_operator",
    "functools",
    "builtins",
    "__builtin__",
    "copyreg",
    "jinja2",
    "mako",
    "numpy.f2py",
    "numpy.distutils",
    "numpy.testing",
    "numpy.lib.npyio",
    "numpy.load",
    "torch._C",
    "torch.hub",
    "torch.jit",
    "torch.package",
    "torch.utils.cpp_extension",
    "torch.distributed",
    "torch._dynamo",
    "torch._inductor",
    "torch.ops",
    "torch.serialization",
    "keras.src.utils",
    "tensorflow.io",
    "tensorflow.python.ops",
];

/// Individual (module, name) pairs that are critical though their module is not.
const CRITICAL_PAIRS: &[(&str, &str)] = &[
    ("torch", "load"),
    ("torch", "save"),
    ("torch", "_load_global_deps"),
    ("torch", "compile"),
    ("torch", "_C"),
    ("torch", "from_file"),
    ("torch.storage", "_load_from_bytes"),
    ("numpy", "load"),
    ("numpy", "loadtxt"),
    ("numpy", "fromfile"),
    ("numpy", "memmap"),
    ("numpy", "save"),
    ("numpy", "savetxt"),
    ("numpy", "genfromtxt"),
];

/// Builtins that are harmless on their own but still outside the allowlist: anything
/// else in `builtins` (eval, exec, getattr, open, `__import__` …) is critical.
const MEDIUM_BUILTINS: &[&str] = &[
    "dict",
    "list",
    "tuple",
    "int",
    "float",
    "str",
    "bytes",
    "bool",
    "range",
    "reversed",
    "enumerate",
    "zip",
    "len",
    "abs",
    "min",
    "max",
    "sum",
    "round",
    "frozenset",
];

fn in_module(module: &str, root: &str) -> bool {
    module == root
        || (module.len() > root.len()
            && module.starts_with(root)
            && module.as_bytes().get(root.len()) == Some(&b'.'))
}

/// Block-list severity of a global that is not allowed.
pub fn severity(module: &str, name: &str) -> Severity {
    if module == "builtins" || module == "__builtin__" {
        return if MEDIUM_BUILTINS.contains(&name) {
            Severity::Medium
        } else {
            Severity::Critical
        };
    }
    if module == "collections" || module == "copyreg" {
        // Containers are harmless; copyreg's extension registry is import machinery.
        return if module == "copyreg" {
            Severity::Critical
        } else {
            Severity::Medium
        };
    }
    if CRITICAL_PAIRS
        .iter()
        .any(|&(m, n)| m == module && n == name)
    {
        return Severity::Critical;
    }
    if CRITICAL_MODULES.iter().any(|root| in_module(module, root)) {
        return Severity::Critical;
    }
    // Dunder attributes reach interpreter internals (`__globals__`, `__subclasses__`).
    if name.contains("__") && name != "__randomstate_ctor" {
        return Severity::High;
    }
    // A module outside the allowlist that is part of a framework the checkpoint
    // plausibly used is less alarming than an arbitrary one.
    Severity::Medium
}

/// Critical only when the dotted path `module.name` walks into a dangerous place; used
/// for dotted names in STACK_GLOBAL and GLOBAL, which CPython resolves attribute by
/// attribute.
pub fn dotted_severity(module: &str, name: &str) -> Severity {
    let mut worst = severity(module, name);
    let mut prefix = module.to_owned();
    for part in name.split('.') {
        let s = severity(&prefix, part);
        worst = worst.max(s);
        if part.starts_with("__") {
            worst = worst.max(Severity::Critical);
        }
        prefix.push('.');
        prefix.push_str(part);
    }
    worst.max(Severity::High)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allowlist_is_exact() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            classify("torch._utils", "_rebuild_tensor_v2", &none),
            Verdict::Allowed
        );
        assert_eq!(classify("torch", "FloatStorage", &none), Verdict::Allowed);
        assert_eq!(
            classify("collections", "OrderedDict", &none),
            Verdict::Allowed
        );
        assert_eq!(
            classify("collections", "defaultdict", &none),
            Verdict::Denied(Severity::Medium)
        );
        assert_eq!(
            classify("torch._utils", "_rebuild_tensor_v2.__globals__", &none),
            Verdict::Denied(Severity::High)
        );
        assert_eq!(
            classify("torch", "load", &none),
            Verdict::Denied(Severity::Critical)
        );
    }

    #[test]
    fn block_list_covers_submodules_and_py2_names() {
        assert_eq!(severity("os", "system"), Severity::Critical);
        assert_eq!(severity("os.path", "join"), Severity::Critical);
        assert_eq!(severity("osx", "thing"), Severity::Medium);
        assert_eq!(
            severity(normalize_module("__builtin__"), "eval"),
            Severity::Critical
        );
        assert_eq!(severity("builtins", "getattr"), Severity::Critical);
        assert_eq!(severity("builtins", "dict"), Severity::Medium);
        assert_eq!(severity("asyncio.unix_events", "x"), Severity::Critical);
        assert_eq!(severity("torch._C._jit", "x"), Severity::Critical);
    }

    #[test]
    fn profiles_are_opt_in() {
        let none: Vec<String> = Vec::new();
        let sk = vec!["sklearn".to_owned()];
        assert!(matches!(
            classify(
                "sklearn.linear_model._logistic",
                "LogisticRegression",
                &none
            ),
            Verdict::Denied(_)
        ));
        assert_eq!(
            classify("sklearn.linear_model._logistic", "LogisticRegression", &sk),
            Verdict::Allowed
        );
        assert!(matches!(
            classify("sklearn.utils._testing", "x", &sk),
            Verdict::Denied(_)
        ));
    }

    #[test]
    fn dotted_walks_are_never_below_high() {
        assert_eq!(
            dotted_severity("collections", "OrderedDict.__init__.__globals__"),
            Severity::Critical
        );
        assert_eq!(dotted_severity("torch", "nn.Module"), Severity::High);
    }
}
