import Testing
@testable import USICore

@Suite struct CommunicatorTests {
    @Test(arguments: [
        ([String: String](), Distributed.Launch.singleProcess),
        (["OMPI_COMM_WORLD_SIZE": "2"], .mpi(variable: "OMPI_COMM_WORLD_SIZE")),
        (["PMIX_RANK": "0"], .mpi(variable: "PMIX_RANK")),
        (["SLURM_NTASKS": "4", "PMI_RANK": "1"], .mpi(variable: "SLURM_NTASKS")),
        (["SLURM_NTASKS": "1", "PMI_RANK": "0"], .singleProcess),  // one Slurm task is one process
        (["SLURM_NTASKS": "4"], .singleProcess),  // a batch script's shell, not a task of srun
    ])
    func launchDetection(environment: [String: String], expected: Distributed.Launch) {
        #expect(Distributed.launch(environment: environment) == expected)
    }

    @Test func singleProcessWithoutLauncher() throws {
        let world = try Distributed.communicator(environment: [:], library: "libusi-no-such-mpi.so")
        #expect(world is SingleProcessCommunicator)
        #expect(world.rank == 0 && world.size == 1)
    }

    @Test func launcherWithoutLibraryNamesThePackages() {
        #expect {
            _ = try Distributed.communicator(environment: ["OMPI_COMM_WORLD_SIZE": "2"], library: "libusi-no-such-mpi.so")
        } throws: { error in
            let text = "\(error)"
            return text.contains("OMPI_COMM_WORLD_SIZE") && text.contains("apt-get install openmpi-bin libopenmpi-dev")
        }
    }

    @Test func singleProcessCollectivesAreTheIdentity() throws {
        let world = SingleProcessCommunicator()
        var values: [Float] = [1, 2, 3]
        try world.allReduceSum(&values)
        #expect(values == [1, 2, 3])
        try values.withUnsafeMutableBufferPointer { try world.startAllReduceSum($0).wait() }
        #expect(values == [1, 2, 3])
        #expect(throws: CommunicatorError.self) { try world.broadcast(&values, root: 1) }
    }

    @Test func gradientAveragingScalesAndKeepsMissingGradientsMissing() throws {
        let a = Tensor(shape: [2], values: [0, 0], requiresGrad: true)
        let b = Tensor(shape: [1], values: [0], requiresGrad: true)
        a.accumulateGradient(Tensor(shape: [2], values: [2, 4]))
        try SingleProcessCommunicator().allReduceGradients(of: [a, b], scale: 0.5)
        #expect(a.grad.map { Array(UnsafeBufferPointer(start: $0.pointer, count: 2)) } == [1, 2])
        #expect(b.grad == nil)
    }
}
