/// USI for Swift: the training scheme on top of the tensor core, the model zoo and the data
/// pipeline. `import USI` brings all of them.
@_exported import USICore
@_exported import USIData
@_exported import USIModels
