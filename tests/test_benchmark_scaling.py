"""`benchmark scaling`: the collective byte count read from the compiled step."""


from alexnet_jax.benchmark import scaling as benchmark


def test_collective_bytes_reads_result_shapes():
  hlo = ("  %ag = bf16[128,13,13,256]{3,2,1,0} all-gather(bf16[128,13,13,128] %x), dimensions={3}\n"
         "  %ar = (f32[10]{0}, f32[4,4]{1,0}) all-reduce(%a, %b), to_apply=%sum\n")
  assert benchmark.collective_bytes(hlo) == {"all-gather": 2 * 128 * 13 * 13 * 256,
                                             "all-reduce": 4 * (10 + 16)}
