/// The data pipeline works in USICore's types (RandomGenerator, Interpolation, Tensor); re-export them.
@_exported import USICore
