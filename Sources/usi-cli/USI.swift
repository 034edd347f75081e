import ArgumentParser

@main
struct USICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usi",
        abstract: "Train any image-classification backbone with the USI recipe (knowledge distillation + a fixed set of modern tricks).",
        discussion: """
        `usi train` with no arguments trains the default student on Fashion-MNIST with the bundled teacher.
        Weights are safetensors files in PyTorch layout with timm's names, so timm loads them and they load timm's.
        """,
        subcommands: [Train.self, Evaluate.self, Predict.self, ListModels.self, Forward.self, Convert.self, Bench.self])
}
