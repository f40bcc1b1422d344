//! One error type for the library: every bad input maps to a variant that names the problem.

use std::path::PathBuf;

mod invalid;

pub use invalid::{InvalidOption, Naming, Phrase};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found: {path}")]
    MissingFile { what: &'static str, path: PathBuf },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{0} is not a regular file (a FIFO, device or directory): spangrad reads a checkpoint's \
         files only when they are regular files"
    )]
    NotAFile(PathBuf),

    #[error("invalid model config {path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error(
        "unknown model_type {model_type:?} in config.json: spangrad explains \
         question-answering checkpoints of model_type {known}"
    )]
    UnknownArchitecture {
        model_type: String,
        /// The model types known, listed.
        known: String,
    },

    #[error("cannot load weights from {path}: {message}")]
    Weights { path: PathBuf, message: String },

    #[error("cannot load tokenizer from {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error(
        "tokenizer and model do not match: the tokenizer has {tokenizer} vocabulary entries but \
         the word-embedding matrix has {embeddings} rows"
    )]
    VocabMismatch { tokenizer: usize, embeddings: usize },

    #[error("the {0} is empty")]
    EmptyInput(&'static str),

    /// `message` names the option that sets the limit (made where it is raised, by
    /// `explain::options::phrases`, as are the other messages that name options).
    #[error("{message}")]
    InputTooLarge {
        bytes: usize,
        limit: usize,
        message: Phrase,
    },

    #[error("cannot explain the given answer: {0}")]
    Answer(String),

    /// An evaluation asked for what cannot be evaluated.
    #[error("cannot evaluate: {0}")]
    Evaluation(String),

    #[error("tokenisation failed: {0}")]
    Encoding(String),

    #[error(
        "the question is {question_tokens} tokens long and leaves no room for the context within \
         max length {max_length} (the question plus 3 special tokens plus at least one context token)"
    )]
    QuestionTooLong {
        question_tokens: usize,
        max_length: usize,
    },

    /// The windows of a split context would not advance.
    #[error("{message}")]
    DocStride {
        stride: usize,
        room: usize,
        message: Phrase,
    },

    #[error("{message}")]
    SeedCompatEndIsLast { end: usize, message: Phrase },

    #[error("no such device: {0}")]
    Device(String),

    #[error("invalid option: {0}")]
    InvalidOption(InvalidOption),

    /// A library call with arguments that do not go together (a programming error).
    #[error("invalid argument: {0}")]
    Usage(String),

    #[error("model {name:?} could not be resolved: {message}")]
    Hub { name: String, message: String },

    #[error("{message}")]
    OutOfMemory {
        what: String,
        needed_mib: usize,
        available_mib: usize,
        message: Phrase,
    },

    #[error("the device ran out of memory: {0}")]
    DeviceOutOfMemory(String),

    #[error("non-finite {0} (NaN or infinity) in the model output")]
    NonFinite(&'static str),

    #[error("tensor computation failed: {}", candle_message(.0))]
    Candle(candle_core::Error),
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE` is set
/// (23 lines of frames under a one-line shape mismatch).
pub fn candle_message(e: &candle_core::Error) -> String {
    use candle_core::Error as E;
    match e {
        E::WithBacktrace { inner, .. } => candle_message(inner),
        E::Context { inner, context } => format!("{context}: {}", candle_message(inner)),
        E::WithPath { inner, path } => format!("{}: {}", path.display(), candle_message(inner)),
        other => other.to_string(),
    }
}

/// Whether a candle error is a device allocation failure (which a smaller pass may avoid).
pub fn is_out_of_memory(e: &candle_core::Error) -> bool {
    let message = candle_message(e);
    message.contains("OUT_OF_MEMORY") || message.contains("out of memory")
}

impl From<candle_core::Error> for Error {
    /// A device allocation failure becomes [`Error::DeviceOutOfMemory`], which the engine
    /// answers by splitting the pass.
    fn from(e: candle_core::Error) -> Self {
        if is_out_of_memory(&e) {
            Error::DeviceOutOfMemory(candle_message(&e))
        } else {
            Error::Candle(e)
        }
    }
}

impl Error {
    /// The message with option names as `naming` writes them (`--doc-stride` on the command
    /// line, `doc_stride` elsewhere: [`Display`](std::fmt::Display) writes those, through this
    /// for the messages that name options).
    pub fn render(&self, naming: Naming) -> String {
        match self {
            Error::InputTooLarge { message, .. }
            | Error::DocStride { message, .. }
            | Error::SeedCompatEndIsLast { message, .. }
            | Error::OutOfMemory { message, .. } => message.render(naming),
            Error::InvalidOption(e) => Phrase::text("invalid option: ")
                .append(&e.message)
                .render(naming),
            other => other.to_string(),
        }
    }

    /// The field of the input at fault, if one is.
    pub fn field(&self) -> Option<Field> {
        match self {
            Error::EmptyInput(what) => Some(Field::Pair(what)),
            Error::InputTooLarge { .. } | Error::OutOfMemory { .. } => Some(Field::Pair("context")),
            Error::Answer(_) => Some(Field::Pair("answer")),
            Error::QuestionTooLong { .. } => Some(Field::Pair("question")),
            _ => self.option().map(Field::Option),
        }
    }

    /// The option at fault, if one is.
    pub fn option(&self) -> Option<&'static str> {
        match self {
            Error::InvalidOption(e) => Some(e.option),
            // The option the message starts with.
            Error::DocStride { message, .. } | Error::SeedCompatEndIsLast { message, .. } => {
                message.first_option()
            }
            _ => None,
        }
    }

    pub fn is_out_of_memory(&self) -> bool {
        matches!(
            self,
            Error::OutOfMemory { .. } | Error::DeviceOutOfMemory(_)
        )
    }
}

/// Where in the input an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A pair's field: `question`, `context`, `answer`.
    Pair(&'static str),
    /// An option, by name.
    Option(&'static str),
}

impl Field {
    /// As a front names it: a pair's field by its JSON key, an option as `naming` writes it.
    pub fn render(self, naming: Naming) -> String {
        match self {
            Field::Pair(key) => key.to_string(),
            Field::Option(name) => naming.name(name),
        }
    }
}

impl From<InvalidOption> for Error {
    fn from(e: InvalidOption) -> Self {
        Error::InvalidOption(e)
    }
}
