//! Keras model configurations: `config.json` / `metadata.json` inside a `.keras` zip,
//! and the `model_config` / `training_config` attributes of a legacy `.h5` file (read by
//! [`super::hdf5`]).
//!
//! Keras rebuilds a model by importing `module` and looking up `class_name` for every
//! object in the config, and `Lambda` layers carry Python bytecode (base64 of
//! `marshal.dumps(code)`) that runs on load or on the first call. So the checks are:
//! `Lambda`/`TFOpLambda` layers, any string that decodes to a marshalled code object,
//! `module` values outside Keras itself, plain functions referenced from Keras modules
//! that are not activations/losses/metrics (the `keras.utils.get_file` style of safe-mode
//! bypass), custom registered objects, and, for configs without `module` (legacy),
//! class names that are not Keras built-ins. The whole JSON tree is walked; its depth is
//! bounded by the JSON parser's recursion limit.

#![deny(clippy::indexing_slicing)]

pub(crate) mod json;

use crate::{Context, Error, Severity};
use json::Json;

/// The most findings reported for one config (a hostile one can repeat a construct).
const MAX_FINDINGS: usize = 64;

/// Check one member of a zip archive that may belong to a Keras `.keras` file
/// (`config.json`, `metadata.json`). Returns `Ok(true)` when the member was a Keras
/// member and has been checked.
pub fn scan_archive_member(name: &str, data: &[u8], cx: &mut Context) -> Result<bool, Error> {
    if name != "config.json" && name != "metadata.json" {
        return Ok(false);
    }
    // metadata.json ({"keras_version", "date_saved"}) is parsed and walked like the config.
    check_config(name, data, None, cx);
    Ok(true)
}

/// Check a Keras model/training config given as JSON bytes. `offset` is where the JSON
/// starts in the input, when known (HDF5 attributes).
pub(crate) fn check_config(what: &str, data: &[u8], offset: Option<u64>, cx: &mut Context) {
    let json = match Json::parse(data) {
        Ok(j) => j,
        Err(e) => {
            cx.report(
                "WS708",
                Severity::Medium,
                offset,
                format!("Keras {what} is not valid JSON ({e}); it could not be checked"),
            );
            return;
        }
    };
    let mut w = Walker {
        cx,
        what,
        offset,
        reported: 0,
    };
    w.walk(&json, &mut String::from("$"));
}

struct Walker<'c, 'a> {
    cx: &'c mut Context<'a>,
    what: &'c str,
    offset: Option<u64>,
    reported: usize,
}

/// Top-level modules whose objects are Keras' own.
fn keras_module(m: &str) -> bool {
    let root = m.split('.').next().unwrap_or(m);
    matches!(
        root,
        "keras" | "tf_keras" | "keras_hub" | "keras_nlp" | "keras_cv"
    ) || m == "tensorflow.keras"
        || m.starts_with("tensorflow.keras.")
        || m.starts_with("tensorflow.python.keras.")
}

/// Modules whose plain functions Keras legitimately serializes by name.
fn function_module(m: &str) -> bool {
    keras_module(m)
        && m.split('.').any(|seg| {
            matches!(
                seg,
                "activations"
                    | "losses"
                    | "metrics"
                    | "initializers"
                    | "regularizers"
                    | "constraints"
            )
        })
}

/// Modules that are code execution, file, network or process access.
fn dangerous_module(m: &str) -> bool {
    let root = m.split('.').next().unwrap_or(m);
    matches!(
        root,
        "os" | "posix"
            | "nt"
            | "subprocess"
            | "builtins"
            | "__builtin__"
            | "sys"
            | "shutil"
            | "socket"
            | "importlib"
            | "pickle"
            | "marshal"
            | "runpy"
            | "code"
            | "ctypes"
            | "pty"
            | "webbrowser"
            | "requests"
            | "urllib"
            | "http"
            | "types"
            | "functools"
            | "operator"
    )
}

/// Keras functions that give file, network or code access when named in a config.
const DANGEROUS_FUNCTIONS: &[&str] = &[
    "get_file",
    "enable_unsafe_deserialization",
    "load_model",
    "save_model",
    "load_weights",
    "save_weights",
    "register_keras_serializable",
    "deserialize_keras_object",
    "func_load",
    "exec",
    "eval",
    "system",
    "popen",
    "import_module",
];

/// Class names of Keras built-ins that appear in configs without a `module` key
/// (legacy Keras 2 / tf.keras `model_config`).
const BUILTIN_CLASSES: &[&str] = &[
    // models
    "Sequential",
    "Functional",
    "Model",
    "InputLayer",
    "TensorShape",
    "__tuple__",
    // reported by their own rules
    "Lambda",
    "TFOpLambda",
    "SlicingOpLambda",
    "__lambda__",
    // core and misc layers
    "Dense",
    "EinsumDense",
    "Activation",
    "Dropout",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Masking",
    "Embedding",
    "Identity",
    "ActivityRegularization",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Concatenate",
    "Dot",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "ELU",
    "Softmax",
    "ThresholdedReLU",
    // convolution and pooling
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "SeparableConv1D",
    "SeparableConv2D",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    // recurrent and attention
    "SimpleRNN",
    "GRU",
    "LSTM",
    "SimpleRNNCell",
    "GRUCell",
    "LSTMCell",
    "RNN",
    "StackedRNNCells",
    "Bidirectional",
    "TimeDistributed",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "Attention",
    "AdditiveAttention",
    "MultiHeadAttention",
    "GroupedQueryAttention",
    // normalization and preprocessing
    "BatchNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "UnitNormalization",
    "Normalization",
    "Rescaling",
    "Resizing",
    "CenterCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomCrop",
    "RandomTranslation",
    "RandomContrast",
    "RandomBrightness",
    "TextVectorization",
    "StringLookup",
    "IntegerLookup",
    "CategoryEncoding",
    "Hashing",
    "Discretization",
    // initializers, regularizers, constraints
    "GlorotUniform",
    "GlorotNormal",
    "HeUniform",
    "HeNormal",
    "LecunUniform",
    "LecunNormal",
    "Zeros",
    "Ones",
    "Constant",
    "RandomUniform",
    "RandomNormal",
    "TruncatedNormal",
    "Orthogonal",
    "Identity",
    "VarianceScaling",
    "L1",
    "L2",
    "L1L2",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "UnitNorm",
    "RadialConstraint",
    // optimizers and schedules
    "Adam",
    "AdamW",
    "SGD",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "Nadam",
    "Ftrl",
    "Lion",
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineDecayRestarts",
    // losses and metrics
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "Huber",
    "Hinge",
    "KLDivergence",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "AUC",
    "Precision",
    "Recall",
    "Mean",
    "MeanMetricWrapper",
    // dtype policies
    "DTypePolicy",
    "Policy",
    "FloatDTypePolicy",
];

fn decode_b64_prefix(s: &str, out: &mut [u8; 12]) -> bool {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let chars: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace())
        .take(16)
        .collect();
    if chars.len() < 16 {
        return false;
    }
    for (q, quad) in chars.chunks(4).enumerate() {
        let mut n = 0u32;
        for &c in quad {
            match val(c) {
                Some(v) => n = (n << 6) | v,
                None => return false,
            }
        }
        for (k, shift) in [16u32, 8, 0].iter().enumerate() {
            if let Some(b) = out.get_mut(q * 3 + k) {
                *b = ((n >> shift) & 0xff) as u8;
            }
        }
    }
    true
}

/// True when `s` is base64 of a marshalled Python code object (`marshal.dumps(code)`
/// starts with type `c`, possibly with the ref flag, then small argument counts).
fn is_bytecode(s: &str) -> bool {
    if s.len() < 24 {
        return false;
    }
    let mut b = [0u8; 12];
    if !decode_b64_prefix(s, &mut b) {
        return false;
    }
    let argc = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    let next = u32::from_le_bytes([b[5], b[6], b[7], b[8]]);
    matches!(b[0], 0x63 | 0xe3) && argc < 256 && next < 256
}

/// True when any string under `j` is bytecode, or a `__lambda__` object is present.
fn has_bytecode(j: &Json) -> bool {
    match j {
        Json::Str(s) => is_bytecode(s),
        Json::Arr(v) => v.iter().any(has_bytecode),
        Json::Obj(m) => m.iter().any(|(k, v)| {
            (k == "class_name" && v.as_str() == Some("__lambda__")) || has_bytecode(v)
        }),
        _ => false,
    }
}

impl Walker<'_, '_> {
    fn report(&mut self, rule: &'static str, severity: Severity, msg: String) {
        if self.reported >= MAX_FINDINGS {
            return;
        }
        self.reported += 1;
        let what = self.what;
        self.cx
            .report(rule, severity, self.offset, format!("Keras {what}: {msg}"));
    }

    fn walk(&mut self, j: &Json, path: &mut String) {
        match j {
            Json::Str(s) if is_bytecode(s) => self.report(
                "WS702",
                Severity::Critical,
                format!("{path} holds a Python function serialized as bytecode (runs on load)"),
            ),
            Json::Arr(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.walk(v, path);
                    path.truncate(len);
                }
            }
            Json::Obj(members) => {
                if let Some(k) = j.duplicate_key() {
                    self.report(
                        "WS708",
                        Severity::High,
                        format!("{path} names \"{k}\" twice; loaders disagree on which wins"),
                    );
                }
                self.check_object(j, path);
                for (k, v) in members {
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    self.walk(v, path);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn check_object(&mut self, j: &Json, path: &str) {
        let class = j.get("class_name").and_then(Json::as_str);
        let module = j.get("module").and_then(Json::as_str);
        let registered = j.get("registered_name").and_then(Json::as_str);
        if j.get("function_type").and_then(Json::as_str) == Some("lambda") {
            self.report(
                "WS702",
                Severity::Critical,
                format!("{path} is a lambda function serialized as bytecode (legacy format)"),
            );
        }
        let Some(class) = class else {
            return;
        };
        match class {
            "Lambda" => {
                let bytecode = j.get("config").is_some_and(has_bytecode);
                let sev = if bytecode {
                    Severity::Critical
                } else {
                    Severity::High
                };
                let how = if bytecode {
                    "with embedded Python bytecode"
                } else {
                    "calling a named Python function"
                };
                self.report(
                    "WS701",
                    sev,
                    format!("{path} is a Lambda layer {how}; it runs arbitrary code"),
                );
            }
            "__lambda__" => self.report(
                "WS702",
                Severity::Critical,
                format!("{path} is a __lambda__ object: a Python function serialized as bytecode"),
            ),
            "TFOpLambda" | "SlicingOpLambda" => self.report(
                "WS705",
                Severity::High,
                format!(
                    "{path} is a {class} layer that calls a TensorFlow function named in the config"
                ),
            ),
            _ => {}
        }
        if let Some(m) = module {
            if !keras_module(m) {
                let sev = if dangerous_module(m) {
                    Severity::Critical
                } else {
                    Severity::High
                };
                self.report(
                    "WS703",
                    sev,
                    format!(
                        "{path} imports {class} from module {m}, which is not part of Keras (custom code runs on load)"
                    ),
                );
            } else if class == "function" {
                let name = j.get("config").and_then(Json::as_str).unwrap_or("");
                if DANGEROUS_FUNCTIONS.contains(&name) {
                    self.report(
                        "WS704",
                        Severity::Critical,
                        format!(
                            "{path} calls {m}.{name}, a Keras function with file, network or code access"
                        ),
                    );
                } else if !function_module(m) {
                    self.report(
                        "WS704",
                        Severity::High,
                        format!(
                            "{path} references the function {m}.{name}, not an activation, loss or metric"
                        ),
                    );
                }
            } else if class.starts_with(|c: char| c.is_ascii_lowercase())
                && DANGEROUS_FUNCTIONS.contains(&class)
            {
                self.report(
                    "WS704",
                    Severity::Critical,
                    format!(
                        "{path} names {m}.{class}, a Keras function with file, network or code access"
                    ),
                );
            }
        } else if !BUILTIN_CLASSES.contains(&class) && class != "function" {
            self.report(
                "WS707",
                Severity::Low,
                format!(
                    "{path} names class {class}, which is not a known Keras built-in (needs custom code to load)"
                ),
            );
        }
        if let Some(r) = registered {
            if r != class
                && !(class == "function" && Some(r) == j.get("config").and_then(Json::as_str))
            {
                self.report(
                    "WS706",
                    Severity::High,
                    format!(
                        "{path} is a custom object registered as \"{r}\" (custom code runs on load)"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Finding, Location, ScanOptions};

    fn findings(name: &str, json: &str) -> (bool, Vec<Finding>) {
        let opts = ScanOptions::default();
        let mut out = Vec::new();
        let mut cx = Context {
            location: Location::file("m.keras"),
            options: &opts,
            findings: &mut out,
            depth: 1,
        };
        let used = scan_archive_member(name, json.as_bytes(), &mut cx).unwrap();
        (used, out)
    }

    fn rules(json: &str) -> Vec<(&'static str, Severity)> {
        findings("config.json", json)
            .1
            .iter()
            .map(|f| (f.rule, f.severity))
            .collect()
    }

    const DENSE: &str = r#"{"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "trainable": true, "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}, "units": 8, "activation": "relu", "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}, "registered_name": null}}, "registered_name": null, "build_config": {"input_shape": [null, 8]}}"#;

    fn model(layers: &[&str]) -> String {
        format!(
            r#"{{"module": "keras", "class_name": "Sequential", "config": {{"name": "s", "layers": [{}]}}, "registered_name": null, "compile_config": {{"optimizer": {{"module": "keras.optimizers", "class_name": "Adam", "config": {{"learning_rate": 0.001}}, "registered_name": null}}, "loss": {{"module": "keras.losses", "class_name": "function", "config": "mean_squared_error", "registered_name": "mean_squared_error"}}, "metrics": ["accuracy"]}}}}"#,
            layers.join(", ")
        )
    }

    // base64(marshal.dumps((lambda x: x).__code__)) prefix as Python 3.11 writes it
    const CODE: &str = "4wEAAAAAAAAAAAAAAAEAAAADAAAA8wYAAACXAHwAUwApAU6pACkB2gF4cwEAAAAg";

    #[test]
    fn builtin_model_is_clean() {
        assert_eq!(rules(&model(&[DENSE, DENSE])), vec![]);
        let (used, f) = findings(
            "metadata.json",
            r#"{"keras_version": "3.8.0", "date_saved": "2025-01-01@00:00:00"}"#,
        );
        assert!(used && f.is_empty());
        let (used, _) = findings("model.weights.h5", "x");
        assert!(!used);
        // legacy (no module) built-ins
        let legacy = r#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "Dense", "config": {"units": 2, "activation": "relu", "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": null}}}}]}}"#;
        assert_eq!(rules(legacy), vec![]);
    }

    #[test]
    fn lambda_layers() {
        let l3 = format!(
            r#"{{"module": "keras.layers", "class_name": "Lambda", "config": {{"name": "l", "function": {{"class_name": "__lambda__", "config": {{"code": "{CODE}\n", "defaults": null, "closure": null}}}}}}, "registered_name": null}}"#
        );
        let r = rules(&model(&[DENSE, &l3]));
        assert!(r.contains(&("WS701", Severity::Critical)), "{r:?}");
        assert!(r.contains(&("WS702", Severity::Critical)), "{r:?}");
        let l2 = format!(
            r#"{{"class_name": "Lambda", "config": {{"function": ["{CODE}", null, null], "function_type": "lambda"}}}}"#
        );
        let r = rules(&model(&[&l2]));
        assert!(r.contains(&("WS701", Severity::Critical)), "{r:?}");
        let named = r#"{"class_name": "Lambda", "config": {"function": "my_fn", "function_type": "function", "module": "mymod"}}"#;
        assert_eq!(rules(&model(&[named])), vec![("WS701", Severity::High)]);
    }

    #[test]
    fn modules_and_functions() {
        let os = r#"{"module": "os", "class_name": "system", "config": {}}"#;
        assert_eq!(rules(&model(&[os])), vec![("WS703", Severity::Critical)]);
        let custom = r#"{"module": "my_layers", "class_name": "Fancy", "config": {}, "registered_name": "Custom>Fancy"}"#;
        assert_eq!(
            rules(&model(&[custom])),
            vec![("WS703", Severity::High), ("WS706", Severity::High)]
        );
        let getfile = r#"{"module": "keras.utils", "class_name": "function", "config": "get_file", "registered_name": "get_file"}"#;
        assert_eq!(
            rules(&model(&[getfile])),
            vec![("WS704", Severity::Critical)]
        );
        let other = r#"{"module": "keras.ops", "class_name": "function", "config": "convert_to_numpy", "registered_name": null}"#;
        assert_eq!(rules(&model(&[other])), vec![("WS704", Severity::High)]);
        let tfop = r#"{"class_name": "TFOpLambda", "config": {"function": "math.add"}}"#;
        assert_eq!(rules(&model(&[tfop])), vec![("WS705", Severity::High)]);
        let unknown = r#"{"class_name": "MyLayer", "config": {}}"#;
        assert_eq!(rules(&model(&[unknown])), vec![("WS707", Severity::Low)]);
    }

    #[test]
    fn bytecode_anywhere_and_bad_json() {
        let hidden =
            format!(r#"{{"class_name": "Dense", "config": {{"units": 1, "notes": ["{CODE}"]}}}}"#);
        assert_eq!(
            rules(&model(&[&hidden])),
            vec![("WS702", Severity::Critical)]
        );
        assert_eq!(rules("{"), vec![("WS708", Severity::Medium)]);
        assert_eq!(
            rules(r#"{"module": "keras", "module": "os"}"#),
            vec![("WS708", Severity::High)]
        );
        // ordinary base64 that is not code
        let b64 = r#"{"class_name": "Dense", "config": {"blob": "aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgY29kZQ=="}}"#;
        assert_eq!(rules(&model(&[b64])), vec![]);
        let deep = "[".repeat(10_000);
        assert_eq!(rules(&deep), vec![("WS708", Severity::Medium)]);
    }

    #[test]
    fn findings_are_capped() {
        let os = r#"{"module": "os", "class_name": "system"}"#;
        let many: Vec<&str> = std::iter::repeat_n(os, 500).collect();
        assert_eq!(rules(&model(&many)).len(), MAX_FINDINGS);
    }
}
