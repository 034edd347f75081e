import Foundation
import USICore

/// Throughput of the training data pipeline (decode → RandomResizedCrop → flip →
/// RandAugment → normalise) over a folder of JPEGs, per worker count. Called by
/// `usi bench data DIR [--json]`; `Tools/data/bench_torch_data.py DIR` measures the same
/// pipeline in PyTorch (timm/torchvision over PIL) and prints the same JSON.
public enum DataBenchmark {
    /// One measurement.
    public struct Measurement: Codable, Sendable, Equatable {
        /// Worker threads.
        public var workers: Int
        /// Decoded and augmented training images per second (wall clock).
        public var imagesPerSecond: Double
        /// Images per second of process CPU time: the per-core rate, which stays meaningful
        /// when other processes share the cores.
        public var imagesPerCPUSecond: Double

        enum CodingKeys: String, CodingKey {
            case workers
            case imagesPerSecond = "img_s"
            case imagesPerCPUSecond = "img_per_cpu_s"
        }
    }

    /// The report: `{"images": n, "size": 224, "results": [{"workers": w, "img_s": x,
    /// "img_per_cpu_s": y}]}`.
    public struct Report: Codable, Sendable {
        /// Distinct images found under the folder.
        public var images: Int
        /// Output side in pixels.
        public var size: Int
        /// One entry per worker count.
        public var results: [Measurement]

        /// The report as one line of JSON.
        public var json: String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
        }
    }

    static func processCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// Cycles through a dataset's indices (reshuffled each pass) until `total` samples.
    struct CyclingSampler: Sampler {
        let count: Int
        let total: Int
        let seed: UInt64
        func indices(epoch: Int) -> [Int] {
            var out: [Int] = []
            var pass: UInt64 = 0
            while out.count < total {
                var g = RandomGenerator(seed: seed, stream: [UInt64(epoch), pass])
                out += permutation(count, generator: &g)
                pass += 1
            }
            return Array(out.prefix(total))
        }
    }

    /// Measures the USI training transform at `size` over every JPEG under `directory`
    /// (searched recursively), for each worker count.
    ///
    /// - Parameters:
    ///   - samples: images processed per measurement (the folder is cycled through).
    ///   - batchSize: loader batch size.
    public static func run(directory: String, size: Int = 224, workerCounts: [Int] = [1, 2],
                           samples: Int = 512, batchSize: Int = 32, seed: UInt64 = 0) throws -> Report {
        guard samples >= batchSize, !workerCounts.isEmpty, workerCounts.allSatisfy({ $0 >= 1 }) else {
            throw DataError.invalidArgument("benchmark needs samples >= batchSize and worker counts >= 1")
        }
        // JPEGs only, as Tools/data/bench_torch_data.py reads, so the two figures compare
        // the same work.
        let dataset = try ImageFolderDataset.allImages(under: directory, extensions: ImageFolderDataset.jpegExtensions)
        let transform = try TrainTransform(size: size)
        var results: [Measurement] = []
        for workers in workerCounts {
            let loader = try DataLoader(dataset: dataset, transform: transform,
                                        sampler: CyclingSampler(count: dataset.count, total: samples, seed: seed),
                                        batchSize: batchSize, workers: workers, seed: seed)
            // warm-up: file cache, allocations
            let warm = loader.batches(epoch: 1000)
            _ = try warm.next()
            warm.cancel()
            warm.waitForWorkers()
            let cpuStart = processCPUSeconds()
            let start = DispatchTime.now().uptimeNanoseconds
            let batches = loader.batches(epoch: 0)
            var images = 0
            while let batch = try batches.next() { images += batch.count }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let cpu = processCPUSeconds() - cpuStart
            results.append(Measurement(workers: workers,
                                       imagesPerSecond: (Double(images) / seconds * 10).rounded() / 10,
                                       imagesPerCPUSecond: (Double(images) / max(cpu, 1e-9) * 10).rounded() / 10))
        }
        return Report(images: dataset.count, size: size, results: results)
    }
}
