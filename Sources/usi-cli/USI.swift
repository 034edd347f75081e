import ArgumentParser

@main
struct USI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usi",
        abstract: "Train any image-classification backbone with the USI recipe.",
        subcommands: [Bench.self])
}
