"""`benchmark scaling`: the collective byte count read from the compiled step."""


from alexnet_jax.benchmark import scaling as benchmark


def test_collective_bytes_reads_result_shapes():
  hlo = ("  %ag = bf16[128,13,13,256]{3,2,1,0} all-gather(bf16[128,13,13,128] %x), dimensions={3}\n"
         "  %ar = (f32[10]{0}, f32[4,4]{1,0}) all-reduce(%a, %b), to_apply=%sum\n")
  assert benchmark.collective_bytes(hlo) == {"all-gather": 2 * 128 * 13 * 13 * 256,
                                             "all-reduce": 4 * (10 + 16)}


def test_a_scaling_point_is_its_meshs_global_batch_over_the_step_time(monkeypatch, capsys):
  """The child's record on the 8 test devices: tiny's two columns leave 4 'data' shards.
  Mutations: the global batch `*` -> `/`; ms or img/s miswritten -> red."""
  import json

  from conftest import load_config

  hlo = "  %ar = f32[10]{0} all-reduce(%a), to_apply=%sum\n"
  asked = []

  def timed_step(config, batch, steps, mesh):
    asked.append((batch, steps, dict(mesh.shape)))
    return 0.5, None, hlo, None

  monkeypatch.setattr(benchmark, "timed_step", timed_step)
  benchmark.bench_scaling(load_config("tiny"), devices=8, per_device_batch=2, steps=3, argv=[])
  record = json.loads(capsys.readouterr().out)
  assert asked == [(8, 3, {"data": 4, "model": 2})]
  assert record == {"bench": "scaling", "devices": 8, "mesh": {"data": 4, "model": 2},
                    "batch_per_data_shard": 2, "global_batch": 8, "ms_per_step": 500.0,
                    "img_per_s": 16.0, "collective_bytes": {"all-reduce": 40}}
