//! The errors whose messages name options, made where they are raised: each front writes the
//! names its own way ([`Phrase::render`]).

use super::name;
use crate::error::{Error, Phrase};

pub fn input_too_large(bytes: usize, limit: usize) -> Error {
    let message = Phrase::text(format!(
        "the question and context are {bytes} bytes, over the limit of {limit} ("
    ))
    .then_option(name::max_input_bytes)
    .then(")");
    Error::InputTooLarge {
        bytes,
        limit,
        message,
    }
}

pub fn doc_stride(stride: usize, room: usize) -> Error {
    let message = Phrase::option(name::doc_stride)
        .then(format!(
            " {stride} leaves no new context per window: with the question, each window \
             holds {room} context tokens; give a smaller "
        ))
        .then_option(name::doc_stride)
        .then(" or a larger ")
        .then_option(name::max_length);
    Error::DocStride {
        stride,
        room,
        message,
    }
}

pub fn seed_compat_end_is_last(end: usize) -> Error {
    let message = Phrase::option(name::seed_compat)
        .then(format!(
            " differentiates the end logit of the token after the predicted end, but the \
             predicted end ({end}) is the last token of the input: the original NeuralQA \
             code fails here (IndexError); run without "
        ))
        .then_option(name::seed_compat);
    Error::SeedCompatEndIsLast { end, message }
}

pub fn out_of_memory(what: String, needed_mib: usize, available_mib: usize) -> Error {
    let message = Phrase::text(format!(
        "out of memory: {what} needs about {needed_mib} MiB, {available_mib} MiB \
         available; lower "
    ))
    .then_option(name::max_batch_tokens)
    .then(" or ")
    .then_option(name::max_length);
    Error::OutOfMemory {
        what,
        needed_mib,
        available_mib,
        message,
    }
}
