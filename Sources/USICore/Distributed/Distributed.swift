import Foundation

/// Chooses the communicator of this process.
public enum Distributed {
    /// How this process was started, from the environment an MPI launcher sets.
    public enum Launch: Equatable, Sendable {
        /// Not by an MPI launcher: one process.
        case singleProcess
        /// By `mpirun`/`mpiexec`/`srun`; `variable` is the environment variable that says so.
        case mpi(variable: String)
    }

    /// `mpirun` (Open MPI) sets `OMPI_COMM_WORLD_SIZE`; PMIx launchers (Open MPI's `prterun`,
    /// `srun --mpi=pmix`) set `PMIX_RANK`; `srun --mpi=pmi2` sets `PMI_RANK`/`PMI_SIZE`, which
    /// counts only with more than one Slurm task (a batch script alone also has Slurm variables).
    public static func launch(environment: [String: String] = ProcessInfo.processInfo.environment) -> Launch {
        if environment["OMPI_COMM_WORLD_SIZE"] != nil { return .mpi(variable: "OMPI_COMM_WORLD_SIZE") }
        if environment["PMIX_RANK"] != nil { return .mpi(variable: "PMIX_RANK") }
        if let tasks = environment["SLURM_NTASKS"].flatMap(Int.init), tasks > 1,
           environment["PMI_RANK"] != nil || environment["PMI_SIZE"] != nil {
            return .mpi(variable: "SLURM_NTASKS")
        }
        return .singleProcess
    }

    /// This process's rank and the job's size as the launcher's environment states them, before
    /// (or without) MPI being initialised — for naming the rank in an error that happens
    /// before it joins the job. Nil outside a launcher or when the variables say nothing.
    public static func launchedRank(environment: [String: String] = ProcessInfo.processInfo.environment) -> (rank: Int, size: Int)? {
        guard launch(environment: environment) != .singleProcess else { return nil }
        for (rank, size) in [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMIX_RANK", "SLURM_NTASKS"),
                             ("PMI_RANK", "PMI_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")] {
            if let r = environment[rank].flatMap(Int.init), let n = environment[size].flatMap(Int.init) { return (r, n) }
        }
        return nil
    }

    /// ``MPICommunicator/world(library:)`` when an MPI launcher started this process, a
    /// ``SingleProcessCommunicator`` otherwise (nothing is loaded then). Under a launcher
    /// without a loadable Open MPI it throws, naming the packages to install: running each
    /// rank as an independent single process would silently train N copies.
    public static func communicator(environment: [String: String] = ProcessInfo.processInfo.environment,
                                    library: String = MPICommunicator.libraryName) throws -> any Communicator {
        switch launch(environment: environment) {
        case .singleProcess:
            return SingleProcessCommunicator()
        case let .mpi(variable):
            do {
                return try MPICommunicator.world(library: library)
            } catch let CommunicatorError.libraryUnavailable(message) {
                throw CommunicatorError.libraryUnavailable("launched by an MPI launcher (\(variable) is set) but \(message)")
            }
        }
    }
}
