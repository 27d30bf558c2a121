from datetime import time, timedelta
import time as _t

from common import wiring
from common.adapters.firestore_metering import DocumentMeter
from tests.support.stack import Api, add_patient, add_point, firestore_client, today_warsaw


def test_probe(project):
    db = firestore_client(project)
    day = today_warsaw() + timedelta(days=2)
    add_point(db, "pt-00001", slots=[(day, time(9, 0), "jcovden", 2), (day, time(9, 0), "comirnaty", 2), (day + timedelta(days=35), time(9, 0), "comirnaty", 2)])
    pesel = add_patient(db, serial=1)
    pesel2 = add_patient(db, serial=2)
    api = Api(project)
    meter = DocumentMeter(wiring.firestore_client())
    tok = api.token("p1", "patient", pesel=pesel)
    t = _t.monotonic()
    r = api.call("POST", "/v1/appointments", token=tok, body={"slot_id": f"pt-00001_{day:%Y%m%d}_0900_jcovden"}, key="k1")
    print(r.status_code, r.get_json(), _t.monotonic() - t, meter.counts())
    c0 = meter.counts()
    tok2 = api.token("p2", "patient", pesel=pesel2)
    t = _t.monotonic()
    r = api.call("POST", "/v1/appointments", token=tok2, body={"slot_id": f"pt-00001_{day:%Y%m%d}_0900_comirnaty"}, key="k1")
    print(r.status_code, r.get_json(), _t.monotonic() - t, meter.counts() - c0)
    print([d.to_dict() for d in db.collection("outbox").stream()])
