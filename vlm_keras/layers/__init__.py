"""Layers: attention (softmax(QK^T/sqrt(d))V), Transformer decoder blocks, embeddings, similarity,
coordinate channels."""

from vlm_keras.layers.coordinate_channels import CoordinateChannels
from vlm_keras.layers.multi_head_attention import MultiHeadAttention
from vlm_keras.layers.positional_embedding import PositionalEmbedding
from vlm_keras.layers.region_embedding import RegionEmbedding
from vlm_keras.layers.scaled_cosine_similarity import ScaledCosineSimilarity
from vlm_keras.layers.scaled_dot_product_attention import ScaledDotProductAttention
from vlm_keras.layers.transformer_decoder_block import TransformerDecoderBlock

__all__ = [
    "CoordinateChannels",
    "MultiHeadAttention",
    "PositionalEmbedding",
    "RegionEmbedding",
    "ScaledCosineSimilarity",
    "ScaledDotProductAttention",
    "TransformerDecoderBlock",
]
