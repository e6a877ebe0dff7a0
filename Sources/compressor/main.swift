import CompressorCLI

Compressor.runMain()
