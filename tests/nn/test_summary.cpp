// nn::summary: each submodule's output shape for an example input and its parameter count.
#include <zkynet/framework/session.h>
#include <zkynet/nn/activation.h>
#include <zkynet/nn/conv.h>
#include <zkynet/nn/flatten.h>
#include <zkynet/nn/linear.h>
#include <zkynet/nn/pooling.h>
#include <zkynet/nn/sequential.h>
#include <zkynet/nn/summary.h>
#include <zkynet/ops/ops.h>

#include <catch2/catch.hpp>

#include <sstream>
#include <string>

using namespace zkynet;

namespace {

// The benchmark CNN: Conv(1,16,3)-ReLU-MaxPool(2)-Conv(16,32,3)-ReLU-MaxPool(2)-Flatten-Linear(800,10).
void build_cnn(nn::Sequential& cnn) {
  cnn.add<nn::Conv2d>(1, 16, 3);
  cnn.add<nn::ReLU>();
  cnn.add<nn::MaxPool2d>(2);
  cnn.add<nn::Conv2d>(16, 32, 3);
  cnn.add<nn::ReLU>();
  cnn.add<nn::MaxPool2d>(2);
  cnn.add<nn::Flatten>();
  cnn.add<nn::Linear>(800, 10);
}

// Returns its input unchanged: no node of its own.
class Identity : public Module<Identity> {
 public:
  Identity() : Module({Variable("x")}) {}
  NodeRef call(const NodeRef& x) { return x; }
};

// A block with a parameter of its own, a nested Sequential, a layer used twice and one never used.
class Net : public Module<Net> {
 public:
  Net() : Module({Variable("x")}) {
    register_parameter("scale", Tensor::ones({3}, DType::Float32));
    body.add<nn::Linear>(3, 4);
    body.add<nn::Tanh>();
    register_module("body", body);
    register_module("skip", skip);
    register_module("head", head);
    register_module("unused", unused);
  }
  NodeRef call(const NodeRef& x) {
    const NodeRef h = body(skip(op::mult(x, param("scale"))));
    return head(head(h));
  }
  nn::Sequential body;
  Identity skip;
  nn::Linear head{4, 4};
  nn::Linear unused{4, 2};
};

}  // namespace

TEST_CASE("summary of the benchmark CNN lists each layer's output shape and parameters", "[layers][summary]") {
  nn::Sequential cnn;
  build_cnn(cnn);
  const std::string text = nn::summary(cnn, Tensor::zeros({64, 1, 28, 28}, DType::Float32));
  const std::string expected =
      "Sequential: input (64,1,28,28) float32 -> output (64,10) float32\n"
      "=======================================\n"
      "Layer (type)    Output shape    Param #\n"
      "---------------------------------------\n"
      "0 (Conv2d)      (64,16,26,26)       160\n"
      "1 (ReLU)        (64,16,26,26)         0\n"
      "2 (MaxPool2d)   (64,16,13,13)         0\n"
      "3 (Conv2d)      (64,32,11,11)     4,640\n"
      "4 (ReLU)        (64,32,11,11)         0\n"
      "5 (MaxPool2d)   (64,32,5,5)           0\n"
      "6 (Flatten)     (64,800)              0\n"
      "7 (Linear)      (64,10)           8,010\n"
      "=======================================\n"
      "Total params: 12,810\n"
      "Trainable params: 12,810\n"
      "Non-trainable params: 0\n";
  CHECK(text == expected);
}

TEST_CASE("summarize gives the rows as data: names, types, shapes, counts", "[layers][summary]") {
  nn::Sequential cnn;
  build_cnn(cnn);
  const nn::ModelSummary s = nn::summarize(cnn, Tensor::zeros({64, 1, 28, 28}, DType::Float32));
  REQUIRE(s.rows.size() == 8);
  const std::vector<Shape> shapes{{64, 16, 26, 26}, {64, 16, 26, 26}, {64, 16, 13, 13}, {64, 32, 11, 11},
                                  {64, 32, 11, 11}, {64, 32, 5, 5},   {64, 800},        {64, 10}};
  const std::vector<std::int64_t> params{160, 0, 0, 4640, 0, 0, 0, 8010};
  const std::vector<std::string> types{"Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
                                       "Linear"};
  for (std::size_t i = 0; i < 8; ++i) {
    INFO("row " << i);
    CHECK(s.rows[i].name == std::to_string(i));
    CHECK(s.rows[i].type == types[i]);
    CHECK(s.rows[i].output_shapes == std::vector<Shape>{shapes[i]});
    CHECK(s.rows[i].params == params[i]);
  }
  CHECK(s.total_params == 12810);
  CHECK(s.trainable_params == 12810);
  CHECK(s.output_shape == Shape{64, 10});
}

TEST_CASE("summary names nested modules by dotted path and counts each module's own parameters",
          "[layers][summary]") {
  Net net;
  const nn::ModelSummary s = nn::summarize(net, Tensor::ones({5, 3}, DType::Float32));
  REQUIRE(s.rows.size() == 7);
  CHECK(s.rows[0].name == "Net");  // the model's own row: it registers "scale"
  CHECK(s.rows[0].params == 3);
  CHECK(s.rows[0].output_shapes == std::vector<Shape>{{5, 4}});
  CHECK(s.rows[1].name == "body");
  CHECK(s.rows[1].type == "Sequential");
  CHECK(s.rows[1].params == 0);
  CHECK(s.rows[1].output_shapes == std::vector<Shape>{{5, 4}});
  CHECK(s.rows[2].name == "body.0");
  CHECK(s.rows[2].params == 16);
  CHECK(s.rows[3].name == "body.1");
  CHECK(s.rows[3].type == "Tanh");
  CHECK(s.rows[4].name == "skip");
  CHECK(s.rows[4].output_shapes == std::vector<Shape>{{5, 3}});  // an identity: its input's shape
  CHECK(s.rows[5].name == "head");
  CHECK(s.rows[5].output_shapes == std::vector<Shape>{{5, 4}, {5, 4}});  // called twice
  CHECK(s.rows[6].name == "unused");
  CHECK(s.rows[6].output_shapes.empty());
  CHECK(s.total_params == 3 + 16 + 20 + 10);
}

TEST_CASE("summary marks repeated calls and modules never called", "[layers][summary]") {
  Net net;
  const std::string text = nn::summary(net, Tensor::ones({5, 3}, DType::Float32));
  CHECK_THAT(text, Catch::Matchers::Contains("\nhead (Linear)       (5,4) [x2]          20\n"));
  CHECK_THAT(text, Catch::Matchers::Contains("\nunused (Linear)     -                   10\n"));
  CHECK_THAT(text, Catch::Matchers::Contains("Total params: 49\n"));
}

TEST_CASE("summary counts parameters that do not require gradients as non-trainable", "[layers][summary]") {
  nn::Sequential mlp;
  mlp.add<nn::Linear>(100, 20);
  mlp.add<nn::ReLU>();
  mlp.add<nn::Linear>(20, 10).param("weight").requires_grad(false);
  const nn::ModelSummary s = nn::summarize(mlp, Tensor::zeros({1, 100}, DType::Float32));
  CHECK(s.total_params == 2020 + 210);
  CHECK(s.trainable_params == 2020 + 10);
  const std::string text = s.str();
  CHECK_THAT(text, Catch::Matchers::Contains("Total params: 2,230\nTrainable params: 2,030\nNon-trainable params: 200\n"));
}

TEST_CASE("summary runs in evaluation mode and restores each module's mode", "[layers][summary]") {
  Net net;
  net.body.eval();  // a mixed state survives the summary
  std::ostringstream os;
  nn::print_summary(net, Tensor::ones({2, 3}, DType::Float32), os);
  CHECK(os.str().rfind("Net: input (2,3) float32 -> output (2,4) float32\n", 0) == 0);
  CHECK(net.is_training());
  CHECK_FALSE(net.body.is_training());
  CHECK_FALSE(net.body[0].is_training());
  CHECK(net.head.is_training());
  CHECK_FALSE(net.head.param("weight").grad().defined());  // no backward pass
}

TEST_CASE("summary refuses to run inside a NoGradGuard scope", "[layers][summary]") {
  nn::Sequential mlp;
  mlp.add<nn::Linear>(3, 2);
  NoGradGuard no_grad;
  CHECK_THROWS_AS(nn::summary(mlp, Tensor::zeros({1, 3}, DType::Float32)), UsageError);
}
