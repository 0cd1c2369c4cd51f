def test_the_frame_table_converts_only_the_frames_asked_for() -> None:
    from dicomweb_server.dicom.frames import FrameTable

    table = FrameTable([[10, 4], [20, 2, 30, 2], [40, 4]])
    assert len(table) == 3
    assert table[1] == [(20, 2), (30, 2)]
    assert table[-1] == [(40, 4)]
    assert table[0:2] == [[(10, 4)], [(20, 2), (30, 2)]]
    assert list(table) == [[(10, 4)], [(20, 2), (30, 2)], [(40, 4)]]
    assert table == [[(10, 4)], [(20, 2), (30, 2)], [(40, 4)]]
    assert table != [[(10, 4)]]
