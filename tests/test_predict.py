"""`python -m alexnet_jax.predict`: top-5 per image, unreadable ones reported, Figure 4 (left)."""


from PIL import Image

from conftest import sample_images


def test_predict_prints_top5_reports_bad_images_and_draws_figure4(straight_run, tmp_path,
                                                                  capsys):
  from alexnet_jax import predict

  workdir, _ = straight_run
  paths = sample_images(str(tmp_path), n=3)
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"not an image")
  out_png = tmp_path / "preds.png"
  status = predict.predict_files(workdir, [*paths, str(broken)], ten_crop=True,
                                 output=str(out_png))
  out = capsys.readouterr()
  assert status == 0, out.err[-2000:]
  lines = out.out.splitlines()
  assert lines[0] == paths[0] and len([l for l in lines if l.startswith("  0.")]) == 15
  probs = [float(l.split()[0]) for l in lines[1:6]]
  assert probs == sorted(probs, reverse=True)
  assert f"{broken}: unreadable" in out.err and "1 of 4 images unreadable" in out.err
  assert predict.predict_files(workdir, [str(broken)]) == 1  # nothing readable: status 1
  with Image.open(out_png) as png:
    assert png.format == "PNG" and png.size == (900, 420)  # 3 columns x 1 block of 4.2 in, 100 dpi
