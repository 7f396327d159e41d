"""zkynet.nn: layers named after torch.nn, usable as attributes of cg.Module subclasses.

    class MLP(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),))
            self.l1 = nn.Linear(64, 32)
            self.l2 = nn.Linear(32, 10)
        def call(self, x):
            return self.l2(op.relu(self.l1(x)))
"""
from ._zkynet import nn as _nn

Linear = _nn.Linear
ReLU = _nn.ReLU
Tanh = _nn.Tanh
Sigmoid = _nn.Sigmoid
Sequential = _nn.Sequential
LeakyReLU = _nn.LeakyReLU
Conv2d = _nn.Conv2d
MaxPool2d = _nn.MaxPool2d
AvgPool2d = _nn.AvgPool2d
Flatten = _nn.Flatten
BatchNorm1d = _nn.BatchNorm1d
BatchNorm2d = _nn.BatchNorm2d
LayerNorm = _nn.LayerNorm
Dropout = _nn.Dropout
Embedding = _nn.Embedding
RNN = _nn.RNN
LSTM = _nn.LSTM
GRU = _nn.GRU
Estimator = _nn.Estimator
summary = _nn.summary
save_checkpoint = _nn.save_checkpoint
load_checkpoint = _nn.load_checkpoint
manual_seed = _nn.manual_seed
state_dict = _nn.state_dict
load_state_dict = _nn.load_state_dict
states = _nn.states
load_states = _nn.load_states
parameters_to_vector = _nn.parameters_to_vector
vector_to_parameters = _nn.vector_to_parameters
gradients_to_vector = _nn.gradients_to_vector
weights = _nn.weights
GELU = _nn.GELU
MultiheadAttention = _nn.MultiheadAttention
TransformerEncoderLayer = _nn.TransformerEncoderLayer
TransformerEncoder = _nn.TransformerEncoder
TransformerDecoderLayer = _nn.TransformerDecoderLayer
TransformerDecoder = _nn.TransformerDecoder
SinusoidalPositionalEncoding = _nn.SinusoidalPositionalEncoding
LearnedPositionalEncoding = _nn.LearnedPositionalEncoding

__all__ = ["Linear", "ReLU", "Tanh", "Sigmoid", "Sequential", "LeakyReLU", "Conv2d", "MaxPool2d", "AvgPool2d",
           "Flatten", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Dropout", "Embedding", "RNN", "LSTM", "GRU",
           "Estimator", "summary", "save_checkpoint", "load_checkpoint", "manual_seed", "state_dict", "load_state_dict",
           "states", "load_states",
           "parameters_to_vector", "vector_to_parameters", "gradients_to_vector", "weights",
           "GELU", "MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder",
           "TransformerDecoderLayer", "TransformerDecoder",
           "SinusoidalPositionalEncoding", "LearnedPositionalEncoding"]
