"""A/B of the face path's CPU time per frame (detect + landmarks + align, one thread): v1 (dense
tfjs resize, one landmark pass) against v2 (gathered resize, mirror-averaged landmarks), the
four combinations interleaved three times on 20 LFW photos pasted into 640x480 frames.

    PYTHONPATH=src:. python scripts/faces_speed_ab.py
"""
import time, statistics, torch
torch.set_num_threads(1)
from bench.face_bench import scenes
from twinshot.models import load_model
from twinshot.preprocessing import decode_image_array
import twinshot.faces.align as A
import twinshot.faces.ops as O
import twinshot.faces.detector as D
import twinshot.faces.landmarks as L
new_resize = O.resize_bilinear
def old_resize(x, size):
    h, w = x.shape[-2:]
    if (h, w) == tuple(size): return x
    def m(n_in, n_out):
        src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out); i0 = src.floor().long().clamp(max=n_in - 1); i1 = (i0 + 1).clamp(max=n_in - 1); f = (src - i0.double()).clamp(0, 1)
        M = torch.zeros(n_out, n_in, dtype=torch.float64); M[torch.arange(n_out), i0] += 1 - f; M[torch.arange(n_out), i1] += f; return M.float()
    return m(h, size[0]) @ x @ m(w, size[1]).T
m = load_model('faces'); pre = m.preprocessing
imgs = scenes(20)
for im in imgs[:3]: decode_image_array(im, pre)
res = {k: [] for k in ('v1: dense resize, one landmark pass', 'dense resize, mirror landmarks', 'v2: gathered resize, mirror landmarks', 'gathered resize, one landmark pass')}
cfg = {'v1: dense resize, one landmark pass': (old_resize, False), 'dense resize, mirror landmarks': (old_resize, True), 'v2: gathered resize, mirror landmarks': (new_resize, True), 'gathered resize, one landmark pass': (new_resize, False)}
for rep in range(3):
    for k, (rs, mir) in cfg.items():
        D.resize_bilinear = rs; L.resize_bilinear = rs; A.MIRROR_LANDMARKS = mir
        c = time.process_time()
        for im in imgs: decode_image_array(im, pre)
        res[k].append((time.process_time() - c) / len(imgs) * 1000)
for k, v in res.items(): print(f'{k}: CPU ms per frame (detect+landmarks+align), median of 3: {statistics.median(v):.1f}  {[round(x,1) for x in v]}')
