//! Standard model shapes with random weights, for benchmarks: no checkpoint needed.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::{Activation, Architecture, ModelConfig, QaModel};
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Preset {
    /// distilbert-base: 6 layers, hidden 768, 12 heads, vocabulary 30,522.
    #[cfg_attr(feature = "cli", value(name = "distilbert-base"))]
    DistilBertBase,
    /// bert-base: 12 layers, hidden 768, 12 heads, vocabulary 30,522.
    #[cfg_attr(feature = "cli", value(name = "bert-base"))]
    BertBase,
    /// roberta-base: bert-base's encoder, vocabulary 50,265, positions from 2, one token type.
    #[cfg_attr(feature = "cli", value(name = "roberta-base"))]
    RobertaBase,
    /// xlm-roberta-base: roberta-base with a vocabulary of 250,002.
    #[cfg_attr(feature = "cli", value(name = "xlm-roberta-base"))]
    XlmRobertaBase,
}

impl Preset {
    pub const ALL: [Self; 4] = [
        Self::DistilBertBase,
        Self::BertBase,
        Self::RobertaBase,
        Self::XlmRobertaBase,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::DistilBertBase => "distilbert-base",
            Self::BertBase => "bert-base",
            Self::RobertaBase => "roberta-base",
            Self::XlmRobertaBase => "xlm-roberta-base",
        }
    }

    pub fn config(self) -> ModelConfig {
        let bert_base = ModelConfig {
            architecture: Architecture::Bert,
            vocab_size: 30_522,
            embedding_size: 768,
            hidden_size: 768,
            num_layers: 12,
            num_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            position_offset: 0,
            type_vocab_size: 2,
            activation: Activation::Gelu,
            layer_norm_eps: 1e-12,
            layer_groups: 12,
            inner_group_num: 1,
        };
        let roberta_base = ModelConfig {
            architecture: Architecture::Roberta,
            vocab_size: 50_265,
            max_position_embeddings: 514,
            position_offset: 2,
            type_vocab_size: 1,
            layer_norm_eps: 1e-5,
            ..bert_base.clone()
        };
        match self {
            Self::BertBase => bert_base,
            Self::DistilBertBase => ModelConfig {
                architecture: Architecture::DistilBert,
                num_layers: 6,
                layer_groups: 6,
                type_vocab_size: 0,
                ..bert_base
            },
            Self::RobertaBase => roberta_base,
            Self::XlmRobertaBase => ModelConfig {
                architecture: Architecture::XlmRoberta,
                vocab_size: 250_002,
                ..roberta_base
            },
        }
    }

    /// A model of this shape with BERT's initialisation (normal weights of standard deviation
    /// 0.02, LayerNorm scales at 1), in `dtype`.
    pub fn random_model(self, device: &Device, dtype: DType) -> Result<QaModel> {
        random_model(&self.config(), RandomWeights::BERT_INIT, device, dtype)
    }
}

/// A model of any shape with random weights: `weights.std` for every matrix, embedding and
/// bias, LayerNorm scales `1 + N(0, weights.norm_std)`.
pub fn random_model(
    config: &ModelConfig,
    weights: RandomWeights,
    device: &Device,
    dtype: DType,
) -> Result<QaModel> {
    let vb = VarBuilder::from_backend(Box::new(weights), dtype, device.clone());
    Ok(QaModel::from_var_builder(vb, config)?)
}

/// How [`random_model`] draws weights.
#[derive(Debug, Clone, Copy)]
pub struct RandomWeights {
    pub std: f64,
    pub norm_std: f64,
}

impl RandomWeights {
    pub const BERT_INIT: Self = Self {
        std: 0.02,
        norm_std: 0.0,
    };
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let is_norm_scale = name.ends_with("LayerNorm.weight") || name.ends_with("norm.weight");
        let values = if is_norm_scale {
            (Tensor::randn(0f32, self.norm_std as f32, shape, device)? + 1.0)?
        } else {
            Tensor::randn(0f32, self.std as f32, shape, device)?
        };
        values.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        // Answer like a QA checkpoint with prefixed body and current LayerNorm names.
        !(name.ends_with(".gamma") || name.ends_with(".beta"))
    }
}
